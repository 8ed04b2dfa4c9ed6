package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]struct {
		mode    os.FileMode
		dir     bool
		wantErr error
	}{
		"owner only":      {mode: 0o600},
		"owner read only": {mode: 0o400},
		"group readable":  {mode: 0o640, wantErr: ErrPermissions},
		"world readable":  {mode: 0o644, wantErr: ErrPermissions},
		"group writable":  {mode: 0o620, wantErr: ErrPermissions},
		"a directory":     {mode: 0o700, dir: true, wantErr: ErrNotRegular},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if tc.dir {
				if err := os.Mkdir(p, tc.mode); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			b, err := Read(p)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Read = %v, want %v", err, tc.wantErr)
			}
			if err == nil && string(b) != "secret" {
				t.Errorf("Read = %q", b)
			}
		})
	}
}

// A link to an owner-only file (how Kubernetes mounts Secrets) is fine; the
// target's mode is what counts.
func TestReadFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "..data")
	if err := os.WriteFile(target, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "tls.key")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(link); !errors.Is(err, ErrPermissions) {
		t.Fatalf("Read through a link to a 0644 file = %v, want ErrPermissions", err)
	}
	if err := os.Chmod(target, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(link); err != nil {
		t.Fatal(err)
	}
}
