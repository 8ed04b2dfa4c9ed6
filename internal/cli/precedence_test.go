package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/stagegate/stagegate/internal/config"
)

// envOf is a LookupEnv that sees only vars.
func envOf(vars map[string]string) config.LookupFunc {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// loadFlags parses args as the commands that read the config do, and loads
// the config the way they do: defaults, the file, the flags given, the
// environment, Validate.
func loadFlags(t *testing.T, env map[string]string, args ...string) (*config.Config, error) {
	t.Helper()
	f := configFlags{lookup: envOf(env)}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.load()
}

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte("listen: 127.0.0.1:7443\ndataDir: /srv/file-data\npolicyDir: /srv/file-policies\nkeys: {dir: /srv/file-keys}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type want struct {
		listen, dataDir, policyDir, keysDir string
	}
	tests := map[string]struct {
		args    []string
		env     map[string]string
		want    want
		wantErr string
	}{
		"default only": {
			want: want{"127.0.0.1:8443", "data", "", filepath.Join("data", "keys")},
		},
		"file overrides default": {
			args: []string{"--config", file},
			want: want{"127.0.0.1:7443", "/srv/file-data", "/srv/file-policies", "/srv/file-keys"},
		},
		"flag overrides file": {
			args: []string{"--config", file, "--listen", ":9443", "--data-dir", "/flag/data", "--policy-dir", "/flag/policies", "--keys-dir", "/flag/keys"},
			want: want{":9443", "/flag/data", "/flag/policies", "/flag/keys"},
		},
		"flag overrides default without a file": {
			args: []string{"--listen", ":9443", "--data-dir", "/flag/data"},
			want: want{":9443", "/flag/data", "", filepath.Join("/flag/data", "keys")},
		},
		"flag unset leaves the file's value": {
			args: []string{"--config", file, "--listen", ":9443"},
			want: want{":9443", "/srv/file-data", "/srv/file-policies", "/srv/file-keys"},
		},
		// Given as "", a flag still wins: the built-in policies, and the
		// keys under the data directory, whatever the file says.
		"flag set to its zero value overrides the file": {
			args: []string{"--config", file, "--policy-dir", "", "--keys-dir", ""},
			want: want{"127.0.0.1:7443", "/srv/file-data", "", filepath.Join("/srv/file-data", "keys")},
		},
		"flag set to a zero value Validate refuses": {
			args:    []string{"--config", file, "--data-dir", ""},
			wantErr: "dataDir must be set",
		},
		"environment does not override flags or file": {
			args: []string{"--config", file},
			env:  map[string]string{config.ServerEnv: "https://elsewhere", config.PasswordEnv: "pw"},
			want: want{"127.0.0.1:7443", "/srv/file-data", "/srv/file-policies", "/srv/file-keys"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadFlags(t, tt.env, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := want{cfg.Listen, cfg.DataDir, cfg.PolicyDir, cfg.Keys.Dir}
			if got != tt.want {
				t.Fatalf("config = %+v, want %+v", got, tt.want)
			}
			if cfg.Keys.CosignKey != filepath.Join(tt.want.keysDir, "cosign.key") {
				t.Fatalf("cosign key %q not derived from the keys dir %q after the flags", cfg.Keys.CosignKey, tt.want.keysDir)
			}
		})
	}
}

// The key password comes from the environment only, never the file.
func TestConfigPasswordFromEnv(t *testing.T) {
	tests := map[string]struct {
		env  map[string]string
		want string
	}{
		"set":   {map[string]string{config.PasswordEnv: "s3cret"}, "s3cret"},
		"unset": {nil, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadFlags(t, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if string(cfg.Keys.Password) != tt.want {
				t.Fatalf("password %q, want %q", cfg.Keys.Password, tt.want)
			}
		})
	}
}

// serve's --log-level is a flag only: the default, or what is given.
func TestServeLogLevelFlag(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"default": {nil, "info"},
		"flag":    {[]string{"--log-level", "debug"}, "debug"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got serveOptions
			fake := func(_ context.Context, _ Streams, _ *config.Config, o serveOptions) error {
				got = o
				return nil
			}
			cmd := newServeCommand(Streams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}, fake)
			cmd.SetArgs(append([]string{"--data-dir", t.TempDir()}, tt.args...))
			if err := cmd.ExecuteContext(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got.logLevel != tt.want {
				t.Fatalf("log level %q, want %q", got.logLevel, tt.want)
			}
		})
	}
}
