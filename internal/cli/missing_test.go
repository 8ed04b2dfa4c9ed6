package cli

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs the command line in dir, with only env as the environment.
func runIn(t *testing.T, dir string, env map[string]string, args ...string) error {
	t.Helper()
	t.Chdir(dir)
	var out, errb bytes.Buffer
	cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errb, LookupEnv: envOf(env)})
	cmd.SetArgs(args)
	return cmd.ExecuteContext(context.Background())
}

// On a fresh clone, every command that needs a file it does not find names
// the command that creates it.
func TestMissingFileNamesItsCreator(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\nspec: {containers: [{name: a, image: \"reg.example/app@sha256:" + strings.Repeat("a", 64) + "\"}]}\n"
	tests := map[string]struct {
		args []string
		want []string
	}{
		"manifests needs the CA": {
			[]string{"manifests", "--registry", "reg.example"},
			[]string{"certs/ca.crt", "`stagegate certs generate` writes it", `--ca-file ""`},
		},
		"ledger verify needs the public keys": {
			[]string{"ledger", "verify"},
			[]string{"data/keys/cosign.pub", "`stagegate keys generate` writes it"},
		},
		"ledger export needs the public keys": {
			[]string{"ledger", "export"},
			[]string{"data/keys/cosign.pub", "`stagegate keys generate` writes it"},
		},
		"ledger compact needs the ledger": {
			[]string{"ledger", "compact"},
			[]string{"data/ledger.db", "`stagegate serve` creates it"},
		},
		"receipt verify needs the keys": {
			[]string{"receipt", "verify", "receipt.json", "--key", "data/keys/cosign.pub", "--log-key", "data/keys/log.pub"},
			[]string{"data/keys/cosign.pub", "`stagegate keys generate` writes it"},
		},
		"check needs the public keys": {
			[]string{"check", "-f", "pod.yaml", "--stage", "dev"},
			[]string{"data/keys/cosign.pub", "`stagegate keys generate` writes it"},
		},
		"serve needs the keys": {
			[]string{"serve"},
			[]string{"data/keys/cosign.key", "`stagegate keys generate` writes it"},
		},
		"client commands need the CA they are given": {
			[]string{"status", "reg.example/app", "--ca-file", "certs/ca.crt"},
			[]string{"certs/ca.crt", "`stagegate certs generate` writes it"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			// What is not missing: the files the commands are pointed at.
			if err := os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte(pod), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "receipt.json"), []byte(`{}`), 0o644); err != nil {
				t.Fatal(err)
			}
			err := runIn(t, dir, nil, tt.args...)
			if err == nil {
				t.Fatal("succeeded in an empty directory")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A client that the server refuses, or whose certificate it cannot check,
// is told what it lacks and what makes it.
func TestClientNamesWhatItLacks(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"unauthenticated"}`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "server-ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		env     map[string]string
		args    []string
		want    string
		notWant string
	}{
		"no token": {
			args: []string{"--ca-file", ca},
			want: "$STAGEGATE_TOKEN is not set; `stagegate serve --dev` prints a token",
		},
		"a token the server refuses": {
			env:     map[string]string{"STAGEGATE_TOKEN": "wrong"},
			args:    []string{"--ca-file", ca},
			want:    "unauthenticated (HTTP 401)",
			notWant: "is not set",
		},
		"server and CA from the environment": {
			env:  map[string]string{"STAGEGATE_CA_FILE": ca},
			want: "$STAGEGATE_TOKEN is not set",
		},
		"no CA file, a certificate the system does not trust": {
			want: "certs/ca.crt does not exist, so only the system's CAs were trusted; `stagegate certs generate` writes it",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{"STAGEGATE_SERVER": srv.URL}
			for k, v := range tt.env {
				env[k] = v
			}
			err := runIn(t, t.TempDir(), env, append([]string{"status", "reg.example/app"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Fatalf("err = %v, must not say %q", err, tt.notWant)
			}
		})
	}
}
