// Package signingtest hands tests the signing material of a stagegate: a
// cosign key pair and a checkpoint (log) key pair, made once per test
// process. A cosign key costs two scrypt runs (one to encrypt it, one to
// load it), about a second on a busy CI machine, and tests that made their
// own per test spent most of their time there; none of them needs a key of
// its own, only a key.
//
// The material is made by signing.GenerateKeys and read back by the
// signing package's loaders, so it is exactly what `stagegate keys
// generate` writes, and WriteKeyDir puts the same files where a server
// started by a test looks for them.
package signingtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/signing"
)

// LogName is the name of the checkpoint key: the origin line of every
// checkpoint a ledger signs with LogSigner or with the keys of WriteKeyDir.
const LogName = "stagegate.test/log"

// The cosign private key is encrypted with the empty password, as in dev
// mode: LoadSigner(path, nil) opens it.

// material is one key set, held in memory.
type material struct {
	files       map[string][]byte // by signing.*File name
	signer      *signing.Signer
	verifier    *signing.Verifier
	logSigner   note.Signer
	logVerifier note.Verifier
}

// Each key set is made once per process, on first use: a package that
// never asks for the foreign one pays nothing for it.
var (
	own     = sync.OnceValues(func() (*material, error) { return generate(LogName) })
	foreign = sync.OnceValues(func() (*material, error) { return generate("stagegate.test/foreign") })
)

// generate writes a key set with signing.GenerateKeys into a directory of
// its own, loads it, and removes the directory: the tests that want files
// get them from WriteKeyDir, in a directory they own.
func generate(logName string) (*material, error) {
	tmp, err := os.MkdirTemp("", "signingtest-")
	if err != nil {
		return nil, fmt.Errorf("signingtest: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "keys")
	if err := signing.GenerateKeys(dir, nil, logName); err != nil {
		return nil, fmt.Errorf("signingtest: %w", err)
	}
	m := &material{files: map[string][]byte{}}
	for _, name := range []string{signing.CosignKeyFile, signing.CosignPubFile, signing.LogKeyFile, signing.LogPubFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("signingtest: %w", err)
		}
		m.files[name] = b
	}
	if m.signer, err = signing.LoadSigner(filepath.Join(dir, signing.CosignKeyFile), nil); err != nil {
		return nil, fmt.Errorf("signingtest: %w", err)
	}
	if m.verifier, err = signing.LoadVerifier(filepath.Join(dir, signing.CosignPubFile)); err != nil {
		return nil, fmt.Errorf("signingtest: %w", err)
	}
	if m.logSigner, err = signing.LoadLogSigner(filepath.Join(dir, signing.LogKeyFile)); err != nil {
		return nil, fmt.Errorf("signingtest: %w", err)
	}
	if m.logVerifier, err = signing.LoadLogVerifier(filepath.Join(dir, signing.LogPubFile)); err != nil {
		return nil, fmt.Errorf("signingtest: %w", err)
	}
	return m, nil
}

func get(tb testing.TB, keys func() (*material, error)) *material {
	tb.Helper()
	m, err := keys()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// Signer is the cosign signer of the process's key set.
func Signer(tb testing.TB) *signing.Signer {
	tb.Helper()
	return get(tb, own).signer
}

// Verifier checks what Signer signs.
func Verifier(tb testing.TB) *signing.Verifier {
	tb.Helper()
	return get(tb, own).verifier
}

// LogSigner signs checkpoints under LogName.
func LogSigner(tb testing.TB) note.Signer {
	tb.Helper()
	return get(tb, own).logSigner
}

// LogVerifier checks what LogSigner signs.
func LogVerifier(tb testing.TB) note.Verifier {
	tb.Helper()
	return get(tb, own).logVerifier
}

// ForeignSigner is a cosign signer with another key than Signer's, which
// Verifier does not trust: a forger's, or another stagegate's.
func ForeignSigner(tb testing.TB) *signing.Signer {
	tb.Helper()
	return get(tb, foreign).signer
}

// ForeignVerifier checks what ForeignSigner signs.
func ForeignVerifier(tb testing.TB) *signing.Verifier {
	tb.Helper()
	return get(tb, foreign).verifier
}

// foreignLogs holds ForeignLogSigner's keys by name.
var foreignLogs sync.Map // string → note.Signer

// ForeignLogSigner signs checkpoints under name with a key of its own,
// made once per name: a forger who copies a log's name but not its key.
// Its key is never LogSigner's, even for LogName.
func ForeignLogSigner(tb testing.TB, name string) note.Signer {
	tb.Helper()
	if s, ok := foreignLogs.Load(name); ok {
		return s.(note.Signer)
	}
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		tb.Fatalf("signingtest: generate log key %q: %v", name, err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatalf("signingtest: log key %q: %v", name, err)
	}
	got, _ := foreignLogs.LoadOrStore(name, s)
	return got.(note.Signer)
}

// WriteKeyDir writes the process's key set into dir as `stagegate keys
// generate` would, so that a server started with it signs with Signer's
// and LogSigner's keys: cosign.key and log.key mode 0600 (the server
// refuses a private key that group or others can read), cosign.pub and
// log.pub 0644. dir is created 0700 if missing. Like GenerateKeys, it
// never overwrites a file: a test that finds keys there already has a bug.
func WriteKeyDir(tb testing.TB, dir string) {
	tb.Helper()
	m := get(tb, own)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatalf("signingtest: %v", err)
	}
	for _, f := range []struct {
		name string
		mode fs.FileMode
	}{
		{signing.CosignKeyFile, 0o600},
		{signing.LogKeyFile, 0o600},
		{signing.CosignPubFile, 0o644},
		{signing.LogPubFile, 0o644},
	} {
		if err := writeNew(filepath.Join(dir, f.name), m.files[f.name], f.mode); err != nil {
			tb.Fatalf("signingtest: %v", err)
		}
	}
}

func writeNew(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	// The umask may have narrowed mode, or (for the public keys) not; set
	// it exactly, as GenerateKeys does.
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	return errors.Join(err, f.Close())
}
