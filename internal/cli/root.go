// Package cli holds stagegate's cobra commands. Commands parse flags into
// the config package's types and call into internal packages; they hold no
// logic of their own.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stagegate/stagegate/internal/config"
)

// Streams are the command's standard streams, injectable for tests.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Main runs the stagegate command line and returns the exit code.
func Main(ctx context.Context, args []string) int {
	cmd := NewRootCommand(Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// NewRootCommand builds the command tree.
func NewRootCommand(s Streams) *cobra.Command {
	root := &cobra.Command{
		Use:           "stagegate",
		Short:         "Enforceable, auditable container image promotion",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.AddCommand(
		newServeCommand(s, runServe),
		newPromoteCommand(s), newRevokeCommand(s), newStatusCommand(s),
		newLedgerCommand(s), newReceiptCommand(s), newCheckCommand(s),
		newKeysCommand(s), newCertsCommand(s), newManifestsCommand(s),
	)
	return root
}

// configFlags binds the flags that override the config file.
type configFlags struct {
	file    string
	dataDir string
	keysDir string
	listen  string
	policy  string
}

func (f *configFlags) bind(fs *pflag.FlagSet) {
	fs.StringVarP(&f.file, "config", "c", "", "config file (YAML)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (ledger, keys, tokens)")
	fs.StringVar(&f.keysDir, "keys-dir", "", "directory of cosign.key, cosign.pub, log.key, log.pub (default <data-dir>/keys)")
	fs.StringVar(&f.listen, "listen", "", "HTTPS listen address")
	fs.StringVar(&f.policy, "policy-dir", "", "directory of Rego policies (default: the built-in policies)")
}

// load applies defaults, then the file, then flags and the environment, and
// validates.
func (f *configFlags) load() (*config.Config, error) {
	cfg, err := config.Load(f.file)
	if err != nil {
		return nil, err
	}
	if f.dataDir != "" {
		cfg.DataDir = f.dataDir
	}
	if f.keysDir != "" {
		cfg.Keys.Dir = f.keysDir
	}
	if f.listen != "" {
		cfg.Listen = f.listen
	}
	if f.policy != "" {
		cfg.PolicyDir = f.policy
	}
	cfg.Keys.Password = []byte(os.Getenv(config.PasswordEnv))
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
