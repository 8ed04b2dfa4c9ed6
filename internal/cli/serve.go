package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/server"
)

type serveOptions struct {
	flags       configFlags
	dev         bool
	devRegistry string
	certDir     string
	logLevel    string
}

// runFunc is what `serve` does once its flags are parsed; tests inject
// their own to check the wiring without starting a server.
type runFunc func(ctx context.Context, s Streams, cfg *config.Config, o serveOptions) error

func newServeCommand(s Streams, run runFunc) *cobra.Command {
	o := serveOptions{flags: configFlags{lookup: s.LookupEnv}}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the admission webhook and the promotion API over HTTPS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.flags.load()
			if err != nil {
				return err
			}
			cfg.Dev = o.dev
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return run(ctx, s, cfg, o)
		},
	}
	o.flags.bind(cmd.Flags())
	cmd.Flags().BoolVar(&o.dev, "dev", false, "development mode: generate keys, certificates and a token, and run an embedded registry with sample images")
	cmd.Flags().StringVar(&o.devRegistry, "dev-registry", "127.0.0.1:5001", "listen address of the embedded registry in --dev mode")
	cmd.Flags().StringVar(&o.certDir, "cert-dir", "certs", "where --dev writes the CA and serving certificate")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func runServe(ctx context.Context, s Streams, cfg *config.Config, o serveOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("serve: --log-level: %w", err)
	}
	logger := newLogger(s.Err, level)
	tuneGC(s.env())
	opts := []app.Option{app.WithLogger(logger), app.WithProcessMetrics()}
	if cfg.Dev {
		opts = append(opts, app.WithDev(app.DevOptions{CertDir: o.certDir, RegistryAddr: o.devRegistry, Out: s.Err}))
	}
	a, err := app.Build(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Start(ctx); err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		Addr: cfg.Listen, CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, ClientCAFile: cfg.TLS.ClientCAFile,
	}, a.Handler, logger)
	if err != nil {
		return err
	}
	servers := []*server.Server{srv}
	if a.AdmissionHandler != nil {
		wsrv, err := server.New(server.Config{
			Addr: cfg.Admission.Listen, CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile,
			ClientCAFile: cfg.Admission.ClientCAFile, RequireClientCert: cfg.Admission.ClientCAFile != "",
		}, a.AdmissionHandler, logger)
		if err != nil {
			srv.Close()
			return err
		}
		servers = append(servers, wsrv)
		logger.Info("serving the webhook", "addr", wsrv.Addr(), "clientCertRequired", cfg.Admission.ClientCAFile != "")
	}
	logger.Info("serving", "addr", srv.Addr(), "ledger", cfg.LedgerPath(), "stages", cfg.StageNames())
	if !cfg.UI.Disabled {
		logger.Info("web view", "url", "https://"+srv.Addr()+"/ui/")
	}
	return server.ServeAll(ctx, servers...)
}

// tuneGC trades a little memory for admission latency. A review allocates
// about 30 KB and keeps almost nothing, so with the default GOGC=100 the
// collector runs every few hundred requests and its assists land in the
// p99. A higher GOGC runs it a quarter as often; the 64 MiB soft limit keeps
// the heap bounded all the same. GOGC and GOMEMLIMIT, when set, win.
func tuneGC(env config.Env) {
	if !env.GOGCSet {
		debug.SetGCPercent(400)
	}
	if !env.GOMemLimitSet {
		debug.SetMemoryLimit(64 << 20)
	}
}
