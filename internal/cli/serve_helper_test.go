package cli

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/registry"
)

// tlsServer is app.Build's handler over TLS, with generated keys, the
// given identities, a real ledger and policy, and an embedded registry
// seeded with the sample images: what a client command talks to.
type tlsServer struct {
	app    *app.App
	sample registry.Sample
	url    string
	caFile string
	// dir is the data directory: keys/ holds the public keys.
	dir string
}

// startTLSServer builds the server from the default config changed by
// edit; everything stops when t ends.
func startTLSServer(t *testing.T, tokens []api.Token, edit func(*config.Config)) *tlsServer {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := run(t, "keys", "generate", "--dir", filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	b, _ := yaml.Marshal(api.TokenFile{Tokens: tokens})
	if err := os.WriteFile(filepath.Join(dir, "tokens.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	edit(cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	emb, err := registry.StartEmbedded("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	sample, err := registry.Seed(context.Background(), emb.Host)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv := httptest.NewTLSServer(a.Handler)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tlsServer{app: a, sample: sample, url: srv.URL, caFile: ca, dir: dir}
}

// as runs a client command with token as $STAGEGATE_TOKEN against s.
func (s *tlsServer) as(token string, args ...string) (stdout, stderr string, err error) {
	var out, errb syncBuf
	cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errb,
		LookupEnv: func(k string) (string, bool) {
			if k == config.TokenEnv {
				return token, true
			}
			return "", false
		}})
	cmd.SetArgs(append(args, "--server", s.url, "--ca-file", s.caFile))
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}
