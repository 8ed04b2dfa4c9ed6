// Package secretfile reads files that hold secrets (private keys, the
// token file), refusing one that group or others can access: such a file
// may already have leaked, and starting on it would hide that.
package secretfile

import (
	"errors"
	"fmt"
	"os"
)

// ErrPermissions means a secret file is accessible by group or others.
var ErrPermissions = errors.New("secretfile: file is accessible by group or others")

// ErrNotRegular means a secret path is not a regular file.
var ErrNotRegular = errors.New("secretfile: not a regular file")

// Check refuses path unless it is a regular file that only its owner can
// access. Symbolic links are followed, as Kubernetes mounts Secrets through
// them; the mode that counts is the target's (set with the Secret volume's
// defaultMode).
func Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s", ErrNotRegular, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o, run `chmod 600 %s` (or set defaultMode: 0600 on its Secret volume)",
			ErrPermissions, path, perm, path)
	}
	return nil
}

// Read checks path with Check, then reads it.
func Read(path string) ([]byte, error) {
	if err := Check(path); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}
