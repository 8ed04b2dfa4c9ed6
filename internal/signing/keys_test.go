package signing

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// genKeys writes a fresh key set into a new directory and returns it.
func genKeys(t testing.TB, password []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := GenerateKeys(dir, password, "stagegate.test/log"); err != nil {
		t.Fatalf("GenerateKeys: %v", err)
	}
	return dir
}

func TestGenerateKeysModes(t *testing.T) {
	dir := genKeys(t, []byte("s3cret"))
	tests := []struct {
		name string
		path string
		want fs.FileMode
	}{
		{"dir", dir, 0o700 | fs.ModeDir},
		{"cosign.key", filepath.Join(dir, CosignKeyFile), 0o600},
		{"cosign.pub", filepath.Join(dir, CosignPubFile), 0o644},
		{"log.key", filepath.Join(dir, LogKeyFile), 0o600},
		{"log.pub", filepath.Join(dir, LogPubFile), 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode() & (fs.ModePerm | fs.ModeDir); got != tt.want {
				t.Errorf("mode = %v, want %v", got, tt.want)
			}
		})
	}
	key, err := os.ReadFile(filepath.Join(dir, CosignKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(key), "ENCRYPTED SIGSTORE PRIVATE KEY") {
		t.Errorf("cosign.key is not in cosign's encrypted format:\n%s", key)
	}
}

func TestGenerateKeysRefusesOverwrite(t *testing.T) {
	for _, name := range []string{CosignKeyFile, CosignPubFile, LogKeyFile, LogPubFile} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			existing := filepath.Join(dir, name)
			if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := GenerateKeys(dir, nil, "stagegate.test/log")
			if !errors.Is(err, ErrExists) {
				t.Fatalf("err = %v, want ErrExists", err)
			}
			if b, _ := os.ReadFile(existing); string(b) != "keep me" {
				t.Errorf("existing file overwritten: %q", b)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("GenerateKeys wrote files despite refusing: %v", entries)
			}
		})
	}
}

// rightPW is distinctive so a leak into error messages is detectable.
const rightPW = "plugh-right-pw"

func TestLoadSigner(t *testing.T) {
	dir := genKeys(t, []byte(rightPW))
	emptyDir := genKeys(t, nil)
	tests := []struct {
		name     string
		path     string
		password []byte
		mode     fs.FileMode // applied before loading when non-zero
		wantErr  error
	}{
		{name: "right password", path: filepath.Join(dir, CosignKeyFile), password: []byte(rightPW)},
		{name: "empty password (dev mode)", path: filepath.Join(emptyDir, CosignKeyFile), password: nil},
		{name: "empty password as empty slice", path: filepath.Join(emptyDir, CosignKeyFile), password: []byte{}},
		{name: "0400 accepted", path: filepath.Join(dir, CosignKeyFile), password: []byte(rightPW), mode: 0o400},
		{name: "wrong password", path: filepath.Join(dir, CosignKeyFile), password: []byte("xyzzy-wrong-pw"), wantErr: ErrBadPassword},
		{name: "missing password", path: filepath.Join(dir, CosignKeyFile), password: nil, wantErr: ErrBadPassword},
		{name: "0644 refused", path: filepath.Join(dir, CosignKeyFile), password: []byte(rightPW), mode: 0o644, wantErr: ErrKeyPermissions},
		{name: "0640 refused", path: filepath.Join(dir, CosignKeyFile), password: []byte(rightPW), mode: 0o640, wantErr: ErrKeyPermissions},
		{name: "not a cosign key", path: filepath.Join(dir, LogKeyFile), password: []byte(rightPW), wantErr: ErrInvalidKey},
		{name: "missing file", path: filepath.Join(dir, "nope.key"), wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mode != 0 {
				if err := os.Chmod(tt.path, tt.mode); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Chmod(tt.path, 0o600) })
			}
			s, err := LoadSigner(tt.path, tt.password)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if s != nil {
					t.Errorf("signer returned with error")
				}
				if tt.wantErr == ErrKeyPermissions && !strings.Contains(err.Error(), "chmod 600 "+tt.path) {
					t.Errorf("error %q does not tell to chmod 600 %s", err, tt.path)
				}
				if strings.Contains(err.Error(), string(tt.password)) && len(tt.password) > 0 {
					t.Errorf("error leaks the password: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadSigner: %v", err)
			}
			pem, err := s.PublicKeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			pub, err := os.ReadFile(filepath.Join(filepath.Dir(tt.path), CosignPubFile))
			if err != nil {
				t.Fatal(err)
			}
			if string(pem) != string(pub) {
				t.Errorf("PublicKeyPEM = %q, want cosign.pub %q", pem, pub)
			}
		})
	}
}

func TestLogKeys(t *testing.T) {
	dir := genKeys(t, nil)
	s, err := LoadLogSigner(filepath.Join(dir, LogKeyFile))
	if err != nil {
		t.Fatalf("LoadLogSigner: %v", err)
	}
	v, err := LoadLogVerifier(filepath.Join(dir, LogPubFile))
	if err != nil {
		t.Fatalf("LoadLogVerifier: %v", err)
	}
	if s.Name() != "stagegate.test/log" || v.Name() != s.Name() || v.KeyHash() != s.KeyHash() {
		t.Fatalf("signer %s/%08x and verifier %s/%08x do not match", s.Name(), s.KeyHash(), v.Name(), v.KeyHash())
	}
	msg, err := note.Sign(&note.Note{Text: "stagegate.test/log\n1\nAAAA\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	if len(n.Sigs) != 1 {
		t.Errorf("verified %d signatures, want 1", len(n.Sigs))
	}

	tests := []struct {
		name    string
		mode    fs.FileMode
		wantErr error
	}{
		{"0600", 0o600, nil},
		{"0604 refused", 0o604, ErrKeyPermissions},
		{"0660 refused", 0o660, ErrKeyPermissions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, LogKeyFile)
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(p, 0o600) })
			_, err := LoadLogSigner(p)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && !strings.Contains(err.Error(), "chmod 600 "+p) {
				t.Errorf("error %q does not tell to chmod 600 %s", err, p)
			}
		})
	}

	if _, err := LoadLogVerifier(filepath.Join(dir, CosignPubFile)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("LoadLogVerifier(cosign.pub) err = %v, want ErrInvalidKey", err)
	}
}

func TestGenerateKeysBadLogName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := GenerateKeys(dir, nil, "bad name+with plus"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("err = %v, want ErrInvalidKey", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("key dir created despite the error: %v", err)
	}
}
