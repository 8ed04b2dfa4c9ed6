package main

import (
	"context"
	"crypto/sha256"
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

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
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
		if _, err := app.WriteTokenFile(ws.tokens, "", "bench", []string{"pipeline", "release"}); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
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
	if err := ws.buildLedgerWith(ctx, tmp, n, fixtureEntry); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return false, fmt.Errorf("bench: %w", err)
	}
	return true, nil
}

// buildLedgerWith appends n real promotions (entry i from fixtureEntry), signed as the promotion use case
// signs them, with a ledger.Importer (without fsync), which checks each
// attestation as `ledger import` does. The attestations are signed ahead by parallel workers, since each
// names its ledger index; `ledger verify` passes on the result.
// entryFunc builds entry i of a fixture.
type entryFunc func(s promotion.Signer, policyDigest string, i int, base time.Time) (*ledger.Entry, error)

func (ws *workspace) buildLedgerWith(ctx context.Context, dir string, n int, fixtureEntry entryFunc) error {
	cfg, err := ws.config(dir, "127.0.0.1:0", "")
	if err != nil {
		return err
	}
	a, err := app.Build(ctx, cfg, app.WithNoSync())
	if err != nil {
		return err
	}
	defer a.Close()
	l, signer, policyDigest := a.Ledger, a.Keys.Signer, a.Policy.Digest()
	// Imported, not appended: every attestation is checked, as `ledger import` checks it.
	imp, err := l.NewImporter(signing.CheckEntry(a.Keys.Verifier))
	if err != nil {
		return err
	}
	defer imp.Close()

	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	workers := runtime.NumCPU()
	const chunk = 4096
	// Two chunks in flight: one being appended while the next is signed.
	ready := make(chan []*ledger.Entry, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var signErr error
	go func() {
		defer close(ready)
		for lo := 0; lo < n; lo += chunk {
			hi := min(lo+chunk, n)
			batch := make([]*ledger.Entry, hi-lo)
			errs := make([]error, workers)
			var wg sync.WaitGroup
			for wk := range workers {
				wg.Go(func() {
					for i := lo + wk; i < hi; i += workers {
						if batch[i-lo], errs[wk] = fixtureEntry(signer, policyDigest, i, base); errs[wk] != nil {
							return
						}
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					signErr = err
					return
				}
			}
			select {
			case ready <- batch:
			case <-sctx.Done():
				return
			}
		}
	}()
	t0 := time.Now()
	done := 0
	for batch := range ready {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := imp.Add(batch...); err != nil {
			return fmt.Errorf("bench: append fixture entries from %d: %w", batch[0].Index, err)
		}
		done += len(batch)
		if done%(25*chunk) < chunk || done == n {
			ws.log.Info("appending fixture entries", "done", done, "of", n, "elapsed", time.Since(t0).Round(time.Second))
		}
	}
	if signErr != nil {
		return fmt.Errorf("bench: sign fixture: %w", signErr)
	}
	if done != n {
		return fmt.Errorf("bench: fixture has %d entries, want %d", done, n)
	}
	return imp.Close()
}

// fixtureEntry is entry i: a promotion, built and signed by
// internal/promotion as Promote records it.
func fixtureEntry(s promotion.Signer, policyDigest string, i int, base time.Time) (*ledger.Entry, error) {
	return promotion.PromotionEntry(s, uint64(i), promotion.Promoted{
		Image: registry.Resolved{Repository: repoOf(i), Digest: digestOf(i)}, Stage: benchStage, Reason: "release train",
		Requester: policy.Identity{Subject: "ci-pipeline", Groups: []string{"pipeline", "release"}},
		Time:      base.Add(time.Duration(i) * time.Millisecond), PolicyDigest: policyDigest,
	})
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
