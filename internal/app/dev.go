package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/pki"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// DevOptions are the settings of `serve --dev`.
type DevOptions struct {
	// CertDir is where the CA and serving certificate are written; it
	// moves the default serving certificate along with it.
	CertDir string
	// RegistryAddr is the listen address of the embedded registry.
	RegistryAddr string
	// Out hears what was generated, and the dev token, once.
	Out io.Writer
}

// prepareDev makes whatever --dev needs and is missing: keys, TLS
// material, a token, and the embedded registry with its samples. It never
// overwrites what exists, so restarts keep their identity. It may point
// cfg.TLS at CertDir.
func prepareDev(ctx context.Context, cfg *config.Config, o DevOptions) (*registry.Embedded, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	if _, err := os.Stat(cfg.Keys.CosignKey); errors.Is(err, fs.ErrNotExist) {
		if err := signing.GenerateKeys(cfg.Keys.Dir, cfg.Keys.Password, cfg.LogOrigin); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "dev: generated signing keys in %s\n", cfg.Keys.Dir)
	}
	if cfg.TLS == config.Default().TLS {
		cfg.TLS.CertFile = filepath.Join(o.CertDir, pki.TLSCert)
		cfg.TLS.KeyFile = filepath.Join(o.CertDir, pki.TLSKey)
	}
	if _, err := os.Stat(cfg.TLS.CertFile); errors.Is(err, fs.ErrNotExist) {
		if err := pki.Generate(o.CertDir, pki.Options{Hosts: pki.ServiceHosts("stagegate", "stagegate-system")}); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "dev: generated a CA and serving certificate in %s\n", o.CertDir)
	}
	if _, err := os.Stat(cfg.TokensFile); errors.Is(err, fs.ErrNotExist) {
		tok, err := WriteTokenFile(cfg.TokensFile, "sgdev_", "dev", []string{"pipeline", "release"})
		if err != nil {
			return nil, err
		}
		tokenPath := filepath.Join(cfg.DataDir, "dev-token")
		if err := os.WriteFile(tokenPath, []byte(tok+"\n"), 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "dev: bearer token for subject \"dev\" (groups pipeline, release), shown once: %s\n", tok)
		fmt.Fprintf(out, "dev: it is also in %s for the walkthrough; the token file keeps only its hash\n", tokenPath)
	}
	emb, err := registry.StartEmbedded(o.RegistryAddr, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	sample, err := registry.Seed(ctx, emb.Host)
	if err != nil {
		emb.Close()
		return nil, err
	}
	fmt.Fprintf(out, "dev: embedded registry on %s with %s and %s\n", emb.Host, sample.Image, sample.Index)
	return emb, nil
}

// WriteTokenFile writes a token file (api.TokenFile) at path holding one
// new random bearer token, prefix followed by 32 random bytes, for subject
// and groups, and returns the token: the file keeps only its hash. It is
// exported for the bench, which gives the serve it starts a token file
// the same way `serve --dev` does.
func WriteTokenFile(path, prefix, subject string, groups []string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := prefix + base64.RawURLEncoding.EncodeToString(b)
	tf := api.TokenFile{Tokens: []api.Token{{SHA256: api.HashToken(tok), Subject: subject, Groups: groups}}}
	out, err := yaml.Marshal(tf)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return "", err
	}
	return tok, nil
}
