package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// fixtureVersion names the cached fixtures; bump it when their content
// changes so that stale caches are not reused.
const fixtureVersion = "v1"

// benchStage is the stage every fixture promotion targets and every review
// asks about.
const benchStage = "prod"

// workspace is the cached material shared by every scenario: the stagegate
// binary, keys, TLS certificates, a tokens file and ledger fixtures.
type workspace struct {
	dir     string
	bin     string
	keysDir string
	certDir string
	tokens  string
	log     *slog.Logger
}

func prepareWorkspace(ctx context.Context, dir string, log *slog.Logger) (*workspace, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ws := &workspace{dir: abs, keysDir: filepath.Join(abs, "keys"), certDir: filepath.Join(abs, "certs"),
		tokens: filepath.Join(abs, "tokens.yaml"), log: log}
	if err := os.MkdirAll(filepath.Join(abs, "bin"), 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	log.Info("building stagegate")
	if ws.bin, err = buildStagegate(ctx, filepath.Join(abs, "bin")); err != nil {
		return nil, err
	}
	// Fixtures are signed with these keys: new keys invalidate them all.
	if !exists(filepath.Join(ws.keysDir, signing.CosignKeyFile)) {
		if err := removeFixtures(abs); err != nil {
			return nil, err
		}
		if err := ws.stagegate(ctx, "keys", "generate", "--dir", ws.keysDir); err != nil {
			return nil, err
		}
	}
	if !exists(filepath.Join(ws.certDir, "tls.crt")) {
		if err := ws.stagegate(ctx, "certs", "generate", "--dir", ws.certDir); err != nil {
			return nil, err
		}
	}
	if !exists(ws.tokens) {
		// serve wants a tokens file; the webhook needs no token and the
		// promotion scenario runs in process, so nobody keeps the token.
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		tf := api.TokenFile{Tokens: []api.Token{{SHA256: api.HashToken(hex.EncodeToString(b)), Subject: "bench", Groups: []string{"pipeline", "release"}}}}
		if err := writeYAML(ws.tokens, tf, 0o600); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

func removeFixtures(dir string) error {
	matches, _ := filepath.Glob(filepath.Join(dir, "ledger-*"))
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

func (ws *workspace) stagegate(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, ws.bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bench: stagegate %v: %w", args, err)
	}
	return nil
}

// fixtureDir is the data directory of the n-entry fixture.
func (ws *workspace) fixtureDir(n int) string {
	return filepath.Join(ws.dir, fmt.Sprintf("ledger-%s-%d", fixtureVersion, n))
}

// config returns a validated config serving dataDir on listen, and writes it
// as YAML to path so that a separate stagegate process reads the same.
func (ws *workspace) config(dataDir, listen, path string) (*config.Config, error) {
	cfg := config.Default()
	cfg.Listen = listen
	cfg.DataDir = dataDir
	cfg.TLS = config.TLS{CertFile: filepath.Join(ws.certDir, "tls.crt"), KeyFile: filepath.Join(ws.certDir, "tls.key")}
	cfg.Keys = config.Keys{Dir: ws.keysDir}
	cfg.TokensFile = ws.tokens
	if path != "" {
		if err := writeYAML(path, cfg, 0o600); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Fixture contents: entry i promotes digestOf(i) of repoOf(i) to benchStage.
func digestOf(i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "stagegate-bench/%d", i))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func repoOf(i int) string { return fmt.Sprintf("registry.example.com/bench/svc-%03d", i%500) }

// fixture makes the n-entry ledger unless it is cached; built says whether
// it had to.
func (ws *workspace) fixture(ctx context.Context, n int) (built bool, err error) {
	final := ws.fixtureDir(n)
	if exists(filepath.Join(final, "ledger.db")) {
		return false, nil
	}
	ws.log.Info("building ledger fixture", "entries", n)
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return false, err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return false, err
	}
	if err := ws.buildLedger(ctx, tmp, n); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return false, fmt.Errorf("bench: %w", err)
	}
	return true, nil
}

// buildLedger signs n real promotion attestations (in parallel, outside any
// ledger transaction), writes them as a ledger export with a checkpoint
// signed by the log key, and loads that with ledger.Import: the same
// canonical entries, tree, state and history indexes as n Appends would
// give, in one transaction instead of n, and `ledger verify` passes on it.
func (ws *workspace) buildLedger(ctx context.Context, dir string, n int) error {
	cfg, err := ws.config(dir, "127.0.0.1:0", "")
	if err != nil {
		return err
	}
	keys, err := app.LoadKeys(cfg)
	if err != nil {
		return err
	}
	pol, err := app.NewPolicy(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	exportPath := filepath.Join(dir, "export.jsonl")
	f, err := os.Create(exportPath)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.Remove(exportPath)
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)

	hasher := rfc6962.DefaultHasher
	rng := (&compact.RangeFactory{Hash: hasher.HashChildren}).NewEmptyRange(0)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	workers := runtime.NumCPU()
	const chunk = 4096
	lines := make([][]byte, chunk)
	errs := make([]error, workers)
	t0 := time.Now()
	for lo := 0; lo < n; lo += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+chunk, n)
		var wg sync.WaitGroup
		for wk := range workers {
			wg.Go(func() {
				for i := lo + wk; i < hi; i += workers {
					line, err := fixtureEntry(keys.Signer, pol.Digest(), i, base)
					if err != nil {
						errs[wk] = err
						return
					}
					lines[i-lo] = line
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		for _, line := range lines[:hi-lo] {
			w.Write(line)
			w.WriteByte('\n')
			if err := rng.Append(hasher.HashLeaf(line), nil); err != nil {
				return fmt.Errorf("bench: tree: %w", err)
			}
		}
		if hi%(100*chunk) < chunk {
			ws.log.Info("signing fixture entries", "done", hi, "of", n, "elapsed", time.Since(t0).Round(time.Second))
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("bench: root: %w", err)
	}
	cp, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", keys.LogSigner.Name(), n, base64.StdEncoding.EncodeToString(root))}, keys.LogSigner)
	if err != nil {
		return fmt.Errorf("bench: checkpoint: %w", err)
	}
	trailer, _ := json.Marshal(map[string]string{"checkpoint": string(cp)})
	w.Write(trailer)
	w.WriteByte('\n')
	if err := w.Flush(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	ws.log.Info("importing fixture", "entries", n, "signed in", time.Since(t0).Round(time.Second))
	l, err := ledger.Open(cfg.LedgerPath(), ledger.WithSigner(keys.LogSigner), ledger.WithNoSync())
	if err != nil {
		return err
	}
	// Import re-checks canonical bytes and the root against the checkpoint;
	// the attestations are checked by `ledger verify` in the scale scenario.
	if err := l.Import(bufio.NewReaderSize(f, 1<<20), keys.LogVerifier, nil); err != nil {
		l.Close()
		return fmt.Errorf("bench: import fixture: %w", err)
	}
	return l.Close()
}

// fixtureEntry is the canonical JSON of entry i: a promotion built and
// signed the way internal/promotion does it.
func fixtureEntry(s *signing.Signer, policyDigest string, i int, base time.Time) ([]byte, error) {
	at := base.Add(time.Duration(i) * time.Millisecond)
	repo, digest := repoOf(i), digestOf(i)
	req := signing.Requester{Subject: "ci-pipeline", Groups: []string{"pipeline", "release"}}
	pred := signing.PromotionPredicate{
		Stage: benchStage, Repository: repo, Requester: req, Reason: "release train",
		Time: at, LedgerIndex: uint64(i), PolicyDigest: policyDigest,
	}
	st, err := signing.NewStatement(repo, digest, signing.PromotionPredicateType, pred)
	if err != nil {
		return nil, err
	}
	env, err := s.Sign(st)
	if err != nil {
		return nil, err
	}
	e := ledger.Entry{
		Index: uint64(i), Kind: ledger.KindPromotion, Repository: repo, Digest: digest, Stage: benchStage,
		Subject: req.Subject, Groups: req.Groups, Reason: pred.Reason, Time: at, Envelope: env,
	}
	return json.Marshal(&e)
}

func writeYAML(path string, v any, mode os.FileMode) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
