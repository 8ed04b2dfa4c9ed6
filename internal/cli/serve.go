package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/pki"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/server"
	"github.com/stagegate/stagegate/internal/signing"
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
	o := serveOptions{}
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
	tuneGC()
	if cfg.Dev {
		emb, err := prepareDev(ctx, s, cfg, o)
		if err != nil {
			return err
		}
		defer emb.Close()
	}
	reg := app.NewRegistry()
	a, err := app.New(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer a.Close()
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
	return server.ServeAll(ctx, servers...)
}

// tuneGC trades a little memory for admission latency. A review allocates
// about 30 KB and keeps almost nothing, so with the default GOGC=100 the
// collector runs every few hundred requests and its assists land in the
// p99. A higher GOGC runs it a quarter as often; the 64 MiB soft limit keeps
// the heap bounded all the same. GOGC and GOMEMLIMIT, when set, win.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(400)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(64 << 20)
	}
}

// prepareDev makes whatever --dev needs and is missing: keys, TLS
// material, a token, and the embedded registry with its samples. It never
// overwrites what exists, so restarts keep their identity.
func prepareDev(ctx context.Context, s Streams, cfg *config.Config, o serveOptions) (*registry.Embedded, error) {
	if _, err := os.Stat(cfg.Keys.CosignKey); errors.Is(err, fs.ErrNotExist) {
		if err := signing.GenerateKeys(cfg.Keys.Dir, cfg.Keys.Password, cfg.LogOrigin); err != nil {
			return nil, err
		}
		fmt.Fprintf(s.Err, "dev: generated signing keys in %s\n", cfg.Keys.Dir)
	}
	// --cert-dir moves the default serving certificate along with the CA.
	if cfg.TLS == config.Default().TLS {
		cfg.TLS.CertFile = filepath.Join(o.certDir, pki.TLSCert)
		cfg.TLS.KeyFile = filepath.Join(o.certDir, pki.TLSKey)
	}
	if _, err := os.Stat(cfg.TLS.CertFile); errors.Is(err, fs.ErrNotExist) {
		if err := pki.Generate(o.certDir, pki.Options{Hosts: pki.ServiceHosts("stagegate", "stagegate-system")}); err != nil {
			return nil, err
		}
		fmt.Fprintf(s.Err, "dev: generated a CA and serving certificate in %s\n", o.certDir)
	}
	if _, err := os.Stat(cfg.TokensFile); errors.Is(err, fs.ErrNotExist) {
		tok, err := newDevToken(cfg)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(s.Err, "dev: bearer token for subject \"dev\" (groups pipeline, release), shown once: %s\n", tok)
		fmt.Fprintf(s.Err, "dev: it is also in %s for the walkthrough; the token file keeps only its hash\n", devTokenPath(cfg))
	}
	emb, err := registry.StartEmbedded(o.devRegistry, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	sample, err := registry.Seed(ctx, emb.Host)
	if err != nil {
		emb.Close()
		return nil, err
	}
	fmt.Fprintf(s.Err, "dev: embedded registry on %s with %s and %s\n", emb.Host, sample.Image, sample.Index)
	return emb, nil
}

func devTokenPath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "dev-token") }

func newDevToken(cfg *config.Config) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "sgdev_" + base64.RawURLEncoding.EncodeToString(b)
	tf := api.TokenFile{Tokens: []api.Token{{SHA256: api.HashToken(tok), Subject: "dev", Groups: []string{"pipeline", "release"}}}}
	out, err := yaml.Marshal(tf)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.TokensFile), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(cfg.TokensFile, out, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(devTokenPath(cfg), []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}
