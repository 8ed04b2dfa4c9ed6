package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

func newLedgerCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{Use: "ledger", Short: "Verify, export, import and compact the ledger"}
	cmd.AddCommand(newLedgerVerifyCommand(s), newLedgerExportCommand(s), newLedgerImportCommand(s), newLedgerCompactCommand(s))
	return cmd
}

// ledgerFlags locate a ledger file and its public keys.
type ledgerFlags struct {
	cf   configFlags
	file string
}

func (f *ledgerFlags) bind(cmd *cobra.Command) {
	f.cf.bind(cmd.Flags())
	cmd.Flags().StringVar(&f.file, "ledger", "", "ledger file (default <data-dir>/ledger.db)")
}

// path returns the ledger file, the check of each entry's attestation
// (foreign entries against registrySource.trustedKeys) and the log key.
func (f *ledgerFlags) path() (string, func(ledger.Entry) error, note.Verifier, error) {
	cfg, err := f.cf.load()
	if err != nil {
		return "", nil, nil, err
	}
	v, lv, err := app.LoadVerifiers(cfg)
	if err != nil {
		return "", nil, nil, err
	}
	trusted, err := app.TrustedKeys(cfg)
	if err != nil {
		return "", nil, nil, err
	}
	return f.ledgerPath(cfg), signing.TrustedEntryCheck(v, trusted), lv, nil
}

func (f *ledgerFlags) ledgerPath(cfg *config.Config) string {
	if f.file != "" {
		return f.file
	}
	return cfg.LedgerPath()
}

func newLedgerVerifyCommand(s Streams) *cobra.Command {
	f := ledgerFlags{cf: configFlags{lookup: s.LookupEnv}}
	var kept, from string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute every leaf and the root, and check every signature",
		Long: "verify recomputes every entry's leaf hash and the Merkle root, checks that the\n" +
			"latest checkpoint is signed by the log key and matches, and checks every\n" +
			"entry's attestation against the cosign public key. It names the first bad entry.\n" +
			"It opens the ledger read-only; run it on a copy while serve is running.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, check, lv, err := f.path()
			if err != nil {
				return err
			}
			if from != "" {
				return verifyFrom(s, path, from, lv, check)
			}
			l, err := ledger.Open(path, ledger.WithReadOnly(), ledger.WithReadAhead())
			if err != nil {
				return err
			}
			defer l.Close()
			if err := l.Verify(lv, check); err != nil {
				return fmt.Errorf("ledger %s does not verify: %w", path, err)
			}
			size, _ := l.Size()
			fmt.Fprintf(s.Out, "ledger %s verifies: %d entries, checkpoint and every attestation signature good\n", path, size)
			if kept != "" {
				if err := extendsKept(l, lv, kept); err != nil {
					return err
				}
				fmt.Fprintf(s.Out, "it extends the checkpoint kept in %s\n", kept)
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&kept, "checkpoint-file", "", "also check that the ledger extends this checkpoint (serve's ledger.checkpointFile), as serve does at startup")
	cmd.Flags().StringVar(&from, "from", "", "a checkpoint verified before (a file with its signed text, e.g. from GET /v1/ledger/checkpoint): check that the ledger extends it, then only the entries after it")
	cmd.MarkFlagsMutuallyExclusive("from", "checkpoint-file")
	return cmd
}

// verifyFrom is `ledger verify --from`: the consistency with a checkpoint
// the caller verified before, then only the entries after it.
func verifyFrom(s Streams, path, from string, lv note.Verifier, check func(ledger.Entry) error) error {
	text, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	cp, err := ledger.ParseCheckpoint(string(text), lv)
	if err != nil {
		return fmt.Errorf("--from %s: %w", from, err)
	}
	l, err := ledger.Open(path, ledger.WithReadOnly())
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.VerifyFrom(lv, cp, check); err != nil {
		return fmt.Errorf("ledger %s does not verify from the checkpoint in %s: %w", path, from, err)
	}
	size, _ := l.Size()
	fmt.Fprintf(s.Out, "ledger %s extends the checkpoint of %d entries in %s; the %d entries after it, their attestation signatures and the checkpoint are good\n",
		path, cp.Size, from, size-cp.Size)
	return nil
}

// extendsKept is serve's rollback check, for an operator deciding what to
// do about a refused start: does the ledger contain the kept checkpoint's
// tree as a prefix?
func extendsKept(l *ledger.Ledger, lv note.Verifier, path string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("checkpoint file: %w", err)
	}
	cp, err := ledger.ParseCheckpoint(string(text), lv)
	if err != nil {
		return fmt.Errorf("checkpoint file %s: %w", path, err)
	}
	size, err := l.Size()
	if err != nil {
		return err
	}
	if size < cp.Size {
		return fmt.Errorf("%w: %s has %d entries, fewer than the %d of the checkpoint kept in %s: it is an older copy",
			ledger.ErrRolledBack, l.Path(), size, cp.Size, path)
	}
	p, err := l.ConsistencyProof(cp.Size, size)
	if err != nil {
		return err
	}
	if !bytes.Equal(p.FromRoot, cp.Root) {
		return fmt.Errorf("%w: %s's root at size %d differs from the checkpoint kept in %s: its history was rewritten",
			ledger.ErrRolledBack, l.Path(), cp.Size, path)
	}
	return nil
}

func newLedgerExportCommand(s Streams) *cobra.Command {
	f := ledgerFlags{cf: configFlags{lookup: s.LookupEnv}}
	var out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the ledger as JSON lines (entries, then the checkpoint)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _, _, err := f.path()
			if err != nil {
				return err
			}
			l, err := ledger.Open(path, ledger.WithReadOnly(), ledger.WithReadAhead())
			if err != nil {
				return err
			}
			defer l.Close()
			w := s.Out
			if out != "" && out != "-" {
				file, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					return err
				}
				defer file.Close()
				w = file
			}
			bw := bufio.NewWriter(w)
			if err := l.Export(bw); err != nil {
				return err
			}
			return bw.Flush()
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write (default stdout); never overwritten")
	return cmd
}

func newLedgerImportCommand(s Streams) *cobra.Command {
	f := ledgerFlags{cf: configFlags{lookup: s.LookupEnv}}
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import an export into an empty ledger; everything is verified before anything is written",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, check, lv, err := f.path()
			if err != nil {
				return err
			}
			in, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			// An import that fails must leave things as they were: a
			// ledger.db it created, even empty, would be served next.
			_, statErr := os.Stat(path)
			created := errors.Is(statErr, os.ErrNotExist)
			l, err := ledger.Open(path)
			if err != nil {
				return err
			}
			if err := l.Import(bufio.NewReader(in), lv, check); err != nil {
				l.Close()
				if created {
					if rerr := os.Remove(path); rerr != nil {
						return fmt.Errorf("import of %s refused: %w (and remove %s: %w)", args[0], err, path, rerr)
					}
				}
				return fmt.Errorf("import of %s refused, %s unchanged: %w", args[0], path, err)
			}
			size, _ := l.Size()
			if err := l.Close(); err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "imported %d entries into %s\n", size, path)
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}

func newLedgerCompactCommand(s Streams) *cobra.Command {
	f := ledgerFlags{cf: configFlags{lookup: s.LookupEnv}}
	cmd := &cobra.Command{
		Use:   "compact",
		Short: "Rewrite the ledger file without its free pages; run it while serve is stopped",
		Long: "compact rewrites the ledger file without the free pages bbolt keeps, which hold\n" +
			"stale copies of pages (entries among them) and take disk space. It rewrites the\n" +
			"whole file, which is why serve does not do it on every stop. It refuses a ledger\n" +
			"that serve has open, and replaces the file only once the copy is complete.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.cf.load()
			if err != nil {
				return err
			}
			path := f.ledgerPath(cfg)
			before, err := os.Stat(path)
			if err != nil {
				return err
			}
			if err := ledger.Compact(path); err != nil {
				return err
			}
			after, err := os.Stat(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "ledger %s compacted: %d bytes, was %d\n", path, after.Size(), before.Size())
			return nil
		},
	}
	f.bind(cmd)
	return cmd
}

func newReceiptCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{Use: "receipt", Short: "Work with promotion receipts"}
	var key, logKey string
	verify := &cobra.Command{
		Use:   "verify RECEIPT --key cosign.pub --log-key log.pub",
		Short: "Verify a receipt, or a promotion set's receipt, offline: attestation signatures, inclusion proofs and checkpoint",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			v, err := signing.LoadVerifier(key)
			if err != nil {
				return err
			}
			lv, err := signing.LoadLogVerifier(logKey)
			if err != nil {
				return err
			}
			if isSetReceipt(b) {
				return verifySetReceipt(s, args[0], b, lv, receiptCheck(v, key))
			}
			var rc ledger.Receipt
			if err := json.Unmarshal(b, &rc); err != nil {
				return fmt.Errorf("%s is not a receipt: %w", args[0], err)
			}
			if err := ledger.VerifyReceipt(rc, lv, receiptCheck(v, key)); err != nil {
				return fmt.Errorf("receipt %s does not verify: %w", args[0], err)
			}
			fmt.Fprintf(s.Out, "receipt verified: %s %s@%s in stage %s, ledger entry %d of %d, checkpoint signed by %s\n",
				rc.Entry.Kind, rc.Entry.Repository, rc.Entry.Digest, rc.Entry.Stage, rc.Entry.Index, rc.Inclusion.TreeSize, lv.Name())
			return nil
		},
	}
	verify.Flags().StringVar(&key, "key", "", "cosign public key (cosign.pub)")
	verify.Flags().StringVar(&logKey, "log-key", "", "ledger log public key (log.pub)")
	_ = verify.MarkFlagRequired("key")
	_ = verify.MarkFlagRequired("log-key")
	cmd.AddCommand(verify)
	return cmd
}

// receiptCheck verifies a receipt's attestation and says which side is
// wrong: the envelope (its signature, made with keyPath's key) or the entry
// (a field that differs from what the attestation signed).
func receiptCheck(v *signing.Verifier, keyPath string) func(ledger.Entry) error {
	check := signing.CheckEntry(v)
	return func(e ledger.Entry) error {
		err := check(e)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, signing.ErrBadSignature):
			return fmt.Errorf("attestation: signature does not verify with %s", keyPath)
		case errors.Is(err, signing.ErrEntryMismatch):
			return fmt.Errorf("entry: differs from its attestation: %w", err)
		default:
			return fmt.Errorf("attestation: %w", err)
		}
	}
}
