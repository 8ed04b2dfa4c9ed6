package signing

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"golang.org/x/mod/sumdb/note"
)

// Key file names inside the key directory, the same names
// `cosign generate-key-pair` writes so cosign can use them directly.
const (
	CosignKeyFile = "cosign.key"
	CosignPubFile = "cosign.pub"
	LogKeyFile    = "log.key"
	LogPubFile    = "log.pub"
)

type keyFile struct {
	name string
	data []byte
	mode fs.FileMode
}

// GenerateKeys writes a new cosign key pair (the private key encrypted with
// password; an empty password is allowed for dev mode) and a new checkpoint
// signing key named logName into dir. dir is created 0700 if missing. It
// refuses to overwrite any existing file (ErrExists) and writes nothing then.
func GenerateKeys(dir string, password []byte, logName string) error {
	files := []string{CosignKeyFile, CosignPubFile, LogKeyFile, LogPubFile}
	for _, f := range files {
		p := filepath.Join(dir, f)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("signing: %w: %s", ErrExists, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("signing: %w", err)
		}
	}

	pw := password
	if pw == nil {
		pw = []byte{}
	}
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return pw, nil })
	if err != nil {
		return fmt.Errorf("signing: generate cosign key pair: %w", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, logName)
	if err != nil {
		return fmt.Errorf("signing: generate log key %q: %w", logName, err)
	}
	// GenerateKey does not check the name; parsing the keys back does, and a
	// bad name must fail here rather than when the server starts.
	if _, err := note.NewSigner(skey); err != nil {
		return fmt.Errorf("signing: %w: log key name %q", ErrInvalidKey, logName)
	}
	if _, err := note.NewVerifier(vkey); err != nil {
		return fmt.Errorf("signing: %w: log key name %q", ErrInvalidKey, logName)
	}

	if err := mkdirPrivate(dir); err != nil {
		return err
	}
	// Private keys first: if anything fails we remove what we wrote, so a
	// retry does not trip over ErrExists with half a key set.
	out := []keyFile{
		{CosignKeyFile, kb.PrivateBytes, 0o600},
		{LogKeyFile, []byte(skey + "\n"), 0o600},
		{CosignPubFile, kb.PublicBytes, 0o644},
		{LogPubFile, []byte(vkey + "\n"), 0o644},
	}
	var written []string
	for _, f := range out {
		p := filepath.Join(dir, f.name)
		if err := writeNew(p, f.data, f.mode); err != nil {
			for _, w := range written {
				_ = os.Remove(w)
			}
			return err
		}
		written = append(written, p)
	}
	return nil
}

func mkdirPrivate(dir string) error {
	_, err := os.Stat(dir)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("signing: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("signing: create key dir: %w", err)
	}
	// MkdirAll is subject to the umask; set the mode explicitly.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("signing: create key dir: %w", err)
	}
	return nil
}

// writeNew creates path exclusively (O_EXCL closes the race with a concurrent
// writer that the Lstat check leaves open) with exactly mode.
func writeNew(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("signing: %w: %s", ErrExists, path)
	}
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	// The umask may have narrowed mode; Chmod makes the result predictable.
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("signing: write %s: %w", path, err)
	}
	return nil
}

// readPrivate reads a private key file after checking that only its owner can
// access it.
func readPrivate(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("signing: %w: %s is not a regular file", ErrInvalidKey, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("signing: %w: %s has mode %04o, run `chmod 600 %s`",
			ErrKeyPermissions, path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return b, nil
}

// LoadLogSigner loads the checkpoint signing key (a note signer key string)
// from path, refusing a file accessible by group or others.
func LoadLogSigner(path string) (note.Signer, error) {
	b, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		// note's errors quote no key material, but do not risk echoing it.
		return nil, fmt.Errorf("signing: %w: %s is not a note signer key", ErrInvalidKey, path)
	}
	return s, nil
}

// LoadLogVerifier loads the checkpoint verifier key (a note verifier key
// string) from path.
func LoadLogVerifier(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("signing: %w: %s: %w", ErrInvalidKey, path, err)
	}
	return v, nil
}
