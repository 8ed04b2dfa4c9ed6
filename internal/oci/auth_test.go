package oci

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stagegate/stagegate/internal/pki"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// TestHtpasswdRegistry runs every operation against a registry that
// requires basic auth, with credentials from a Docker config (the default
// keychain), and checks the error without them.
func TestHtpasswdRegistry(t *testing.T) {
	reg := startRegistry(t, framework.WithHtpasswd("ci", "s3cret"))
	repo := reg.Repo("team/app")
	digest := pushImage(t, repo, remote.WithAuth(reg.Authenticator()))
	k := newKeys(t)
	env := k.sign(t, repo, digest, signing.PromotionPredicateType, promotion(repo, "prod", time.Unix(1700000000, 0).UTC()))
	ctx := context.Background()

	tests := []struct {
		name  string
		auths map[string]authn.AuthConfig
		want  error
	}{
		{name: "no credentials", want: registry.ErrUnauthorized},
		{name: "wrong password", auths: map[string]authn.AuthConfig{reg.Addr: {Username: "ci", Password: "nope"}}, want: registry.ErrUnauthorized},
		{name: "docker config", auths: map[string]authn.AuthConfig{reg.Addr: {Username: "ci", Password: "s3cret"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateDockerConfig(t, tt.auths)
			a := NewAttacher()
			ops := []struct {
				op  string
				run func() error
			}{
				{"attach", func() error { return a.Attach(ctx, repo, digest, env) }},
				{"move tag", func() error { return a.MoveTag(ctx, repo, digest, "prod") }},
				{"copy", func() error { return a.Copy(ctx, repo, digest, reg.Repo("prod/app"), nil) }},
				{"attestations", func() error {
					_, err := a.Attestations(ctx, repo, digest)
					return err
				}},
			}
			for _, o := range ops {
				err := o.run()
				if !errors.Is(err, tt.want) {
					t.Errorf("%s: err = %v, want %v", o.op, err, tt.want)
				}
				if tt.want != nil {
					t.Logf("%s: %v", o.op, err)
				}
				if tt.want != nil && !strings.Contains(err.Error(), reg.Addr) {
					t.Errorf("%s: error does not name the registry: %v", o.op, err)
				}
			}
			if tt.want != nil {
				return
			}
			// With credentials, the writes landed.
			envs, err := a.Attestations(ctx, repo, digest)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := signing.ForeignEntries(digest, envs, []*signing.Verifier{k.verifier}); len(got) != 1 {
				t.Errorf("%d entries read back, want 1", len(got))
			}
			if _, err := remote.Head(mustTag(t, reg.Repo("prod/app")+":build"), remote.WithAuth(reg.Authenticator())); err == nil {
				t.Error("copy also copied the source tag; it should copy by digest only")
			}
			if _, err := remote.Head(mustDigest(t, reg.Repo("prod/app")+"@"+digest), remote.WithAuth(reg.Authenticator())); err != nil {
				t.Errorf("copy not at destination: %v", err)
			}
		})
	}
}

// TestTLSRegistry talks to an HTTPS registry whose certificate a private CA
// signed, through registry.Client's per-host settings.
func TestTLSRegistry(t *testing.T) {
	isolateDockerConfig(t, nil)
	dir := t.TempDir()
	if err := pki.Generate(dir, pki.Options{Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	read := func(f string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	reg := startRegistry(t, framework.WithTLS(read(pki.TLSCert), read(pki.TLSKey)))
	repo := reg.Repo("team/app")
	digest := pushImage(t, repo, remote.WithTransport(reg.Transport()))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(read(pki.CACert)) {
		t.Fatal("no CA certificate")
	}

	tests := []struct {
		name    string
		host    *registry.Host
		wantErr bool
	}{
		{name: "custom CA", host: &registry.Host{RootCAs: pool}},
		{name: "insecure, explicitly", host: &registry.Host{Insecure: true}},
		{name: "system roots", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []registry.Option
			if tt.host != nil {
				opts = append(opts, registry.WithHost(reg.Addr, *tt.host))
			}
			c := registry.New(opts...)
			a := NewAttacher(WithRemoteOptions(c.RemoteOptions), WithReferenceParser(c.ParseReference))
			err := a.MoveTag(context.Background(), repo, digest, "prod")
			if tt.wantErr {
				if !errors.Is(err, registry.ErrUnreachable) {
					t.Fatalf("err = %v, want %v", err, registry.ErrUnreachable)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Head(mustTag(t, repo+":prod"), remote.WithTransport(reg.Transport()))
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest.String() != digest {
				t.Errorf("prod -> %s, want %s", desc.Digest, digest)
			}
		})
	}
}
