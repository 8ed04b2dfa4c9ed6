package signingtest_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

func statement(t *testing.T) signing.Statement {
	t.Helper()
	st, err := signing.NewStatement("reg.example/app", "sha256:"+strings.Repeat("ab", 32),
		signing.PromotionPredicateType, signing.PromotionPredicate{Stage: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestKeysVerify: each signer's work verifies with its own verifier and
// with no other, and the process gets one key set however often it asks.
func TestKeysVerify(t *testing.T) {
	st := statement(t)
	tests := map[string]struct {
		signer *signing.Signer
		trust  *signing.Verifier
		other  *signing.Verifier
	}{
		"own":     {signingtest.Signer(t), signingtest.Verifier(t), signingtest.ForeignVerifier(t)},
		"foreign": {signingtest.ForeignSigner(t), signingtest.ForeignVerifier(t), signingtest.Verifier(t)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			env, err := tc.signer.Sign(st)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tc.trust.Verify(env); err != nil {
				t.Errorf("own verifier: %v", err)
			}
			if _, err := tc.other.Verify(env); !errors.Is(err, signing.ErrBadSignature) {
				t.Errorf("other verifier: %v, want ErrBadSignature", err)
			}
		})
	}
	if signingtest.Signer(t) != signingtest.Signer(t) {
		t.Error("Signer made a second key")
	}
}

func TestLogKeys(t *testing.T) {
	s, v := signingtest.LogSigner(t), signingtest.LogVerifier(t)
	if s.Name() != signingtest.LogName || v.Name() != signingtest.LogName {
		t.Fatalf("names %q, %q, want %q", s.Name(), v.Name(), signingtest.LogName)
	}
	msg, err := note.Sign(&note.Note{Text: "checkpoint\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("LogVerifier does not open LogSigner's note: %v", err)
	}
	forged, err := note.Sign(&note.Note{Text: "checkpoint\n"}, signingtest.ForeignLogSigner(t, signingtest.LogName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(forged, note.VerifierList(v)); err == nil {
		t.Error("LogVerifier opens a note of ForeignLogSigner under the same name")
	}
	if signingtest.ForeignLogSigner(t, "x.example/log").KeyHash() != signingtest.ForeignLogSigner(t, "x.example/log").KeyHash() {
		t.Error("ForeignLogSigner made a second key for one name")
	}
}

// TestWriteKeyDir: the files are what the server loads, with its modes,
// and hold the same keys as Signer and LogSigner.
func TestWriteKeyDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	signingtest.WriteKeyDir(t, dir)
	modes := map[string]fs.FileMode{
		".": 0o700 | fs.ModeDir, signing.CosignKeyFile: 0o600, signing.LogKeyFile: 0o600,
		signing.CosignPubFile: 0o644, signing.LogPubFile: 0o644,
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModePerm | fs.ModeDir); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
	signer, err := signing.LoadSigner(filepath.Join(dir, signing.CosignKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signer.Sign(statement(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signingtest.Verifier(t).Verify(env); err != nil {
		t.Errorf("the written cosign.key is not Signer's: %v", err)
	}
	logS, err := signing.LoadLogSigner(filepath.Join(dir, signing.LogKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if logS.KeyHash() != signingtest.LogSigner(t).KeyHash() || logS.Name() != signingtest.LogName {
		t.Error("the written log.key is not LogSigner's")
	}
	if _, err := signing.LoadVerifier(filepath.Join(dir, signing.CosignPubFile)); err != nil {
		t.Error(err)
	}
	if _, err := signing.LoadLogVerifier(filepath.Join(dir, signing.LogPubFile)); err != nil {
		t.Error(err)
	}
}

// fatalTB records Fatal instead of failing the test that runs it.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = format
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fatalTB) Fatal(args ...any) { f.Fatalf("%v", args...) }

func TestWriteKeyDirRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, signing.LogKeyFile), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); signingtest.WriteKeyDir(tb, dir) }()
	<-done
	if tb.msg == "" {
		t.Error("WriteKeyDir overwrote log.key without failing the test")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, signing.LogKeyFile)); string(b) != "mine" {
		t.Errorf("log.key = %q, want it untouched", b)
	}
}
