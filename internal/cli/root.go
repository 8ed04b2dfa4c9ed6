// Package cli holds stagegate's cobra commands. Commands parse flags into
// the config package's types and call into internal packages; they hold no
// logic of their own.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/pki"
	"github.com/stagegate/stagegate/internal/signing"
)

// Streams are the command's standard streams and its environment,
// injectable for tests.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
	// LookupEnv reads the environment through config.FromEnv; nil reads
	// the process's.
	LookupEnv config.LookupFunc
}

// env is what the environment says, read once per use.
func (s Streams) env() config.Env { return config.FromEnv(s.LookupEnv) }

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
		newPromoteCommand(s), newRevokeCommand(s), newStatusCommand(s), newReportCommand(s),
		newLedgerCommand(s), newReceiptCommand(s), newCheckCommand(s),
		newKeysCommand(s), newCertsCommand(s), newManifestsCommand(s),
		newRequestsCommand(s), newAnswerCommand(s, "approve", "approvals"), newAnswerCommand(s, "reject", "rejections"),
		newStagesCommand(s),
		newClusterCommand(s),
	)
	nameCreators(root)
	return root
}

// What writes the files that commands read and do not make themselves. A
// fresh clone has none of them, and "no such file or directory" alone
// does not say what to run.
const (
	makesKeys  = "`stagegate keys generate` writes it (`stagegate serve --dev` does on its first start)"
	makesCerts = "`stagegate certs generate` writes it (`stagegate serve --dev` does on its first start)"
	makesToken = "`stagegate serve --dev` prints a token and keeps it in data/dev-token: export " + config.TokenEnv + "=$(cat data/dev-token)"
	// The ledger file is made by the server on its first start, or by
	// importing an export into an empty data directory.
	makesLedger = "`stagegate serve` creates it on its first start (`stagegate ledger import` from an export does too)"
)

// creators maps the default file names to what writes them.
var creators = map[string]string{
	signing.CosignKeyFile: makesKeys, signing.CosignPubFile: makesKeys,
	signing.LogKeyFile: makesKeys, signing.LogPubFile: makesKeys,
	pki.CACert: makesCerts, pki.TLSCert: makesCerts, pki.TLSKey: makesCerts,
	"ledger.db": makesLedger,
}

// missingFileError is a file a command needs and did not find, with what
// creates it.
type missingFileError struct {
	err     error
	creator string
}

func (e *missingFileError) Error() string { return e.err.Error() + ": " + e.creator }
func (e *missingFileError) Unwrap() error { return e.err }

// explainMissing names what creates the file err did not find, when err is
// a missing file of a known name; otherwise it returns err as it is.
func explainMissing(err error) error {
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || errors.As(err, new(*missingFileError)) {
		return err
	}
	creator, ok := creators[filepath.Base(pe.Path)]
	if !ok {
		return err
	}
	return &missingFileError{err: err, creator: creator}
}

// nameCreators makes every command of the tree explain the missing files
// it names, in one place instead of at each file a command reads.
func nameCreators(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		nameCreators(c)
	}
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { return explainMissing(run(c, args)) }
	}
}

// configFlags binds the flags that override the config file.
type configFlags struct {
	file    string
	dataDir string
	keysDir string
	listen  string
	policy  string
	// fs tells a flag given as "" from one not given: given, it wins over
	// the file whatever its value.
	fs *pflag.FlagSet
	// lookup reads the environment; nil reads the process's.
	lookup config.LookupFunc
}

func (f *configFlags) bind(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVarP(&f.file, "config", "c", "", "config file (YAML)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (ledger, keys, tokens)")
	fs.StringVar(&f.keysDir, "keys-dir", "", "directory of cosign.key, cosign.pub, log.key, log.pub (default <data-dir>/keys)")
	fs.StringVar(&f.listen, "listen", "", "HTTPS listen address")
	fs.StringVar(&f.policy, "policy-dir", "", "directory of Rego policies (default: the built-in policies)")
}

// load applies defaults, then the file, then flags and the environment, and
// validates. A flag overrides the file when it is given, even as "": an
// explicit --policy-dir "" means the built-in policies, and an explicit
// --data-dir "" is an error, not the file's directory.
func (f *configFlags) load() (*config.Config, error) {
	cfg, err := config.Load(f.file)
	if err != nil {
		return nil, err
	}
	for _, o := range []struct {
		flag string
		dst  *string
		val  string
	}{
		{"data-dir", &cfg.DataDir, f.dataDir},
		{"keys-dir", &cfg.Keys.Dir, f.keysDir},
		{"listen", &cfg.Listen, f.listen},
		{"policy-dir", &cfg.PolicyDir, f.policy},
	} {
		if f.fs != nil && f.fs.Changed(o.flag) {
			*o.dst = o.val
		}
	}
	config.FromEnv(f.lookup).Apply(cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
