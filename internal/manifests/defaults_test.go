package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// TestServerFilesSafeDefaults checks the registry allow-list and the
// rollback guard in the config the server gets, for each way of setting
// them, and that the server accepts that config.
func TestServerFilesSafeDefaults(t *testing.T) {
	guardPath := GuardDir + "/" + GuardFile
	tests := []struct {
		name       string
		modify     func(*config.Config)
		o          Options
		allowList  bool
		registries []string
		guard      string
		err        error
	}{
		{"hosts from the options", func(*config.Config) {}, Options{Registries: []string{"ghcr.io", "registry.corp.example:5000"}},
			true, []string{"ghcr.io", "registry.corp.example:5000"}, guardPath, nil},
		{"hosts from the config, listed for their CA", func(c *config.Config) {
			c.Registries = []config.Registry{{Host: "Registry.Corp.Example", CAFile: writeFile(t, "ca.crt", "ca")}}
		}, Options{Registries: []string{"registry.corp.example", "ghcr.io"}},
			true, []string{"Registry.Corp.Example", "ghcr.io"}, guardPath, nil},
		{"config's own allow-list", func(c *config.Config) {
			c.Registries, c.RegistryAllowList = []config.Registry{{Host: "ghcr.io"}}, true
		}, Options{}, true, []string{"ghcr.io"}, guardPath, nil},
		{"no host", func(*config.Config) {}, Options{}, false, nil, "", ErrNoRegistries},
		{"allow-list off", func(*config.Config) {}, Options{NoRegistryAllowList: true}, false, nil, guardPath, nil},
		{"allow-list off, config's registries kept for TLS", func(c *config.Config) {
			c.Registries = []config.Registry{{Host: "registry.corp.example", Insecure: true}}
		}, Options{NoRegistryAllowList: true}, false, []string{"registry.corp.example"}, guardPath, nil},
		{"allow-list off against the config", func(c *config.Config) {
			c.Registries, c.RegistryAllowList = []config.Registry{{Host: "ghcr.io"}}, true
		}, Options{NoRegistryAllowList: true}, false, nil, "", ErrInvalidOption},
		{"guard off", func(*config.Config) {}, Options{Registries: []string{"ghcr.io"}, NoCheckpointGuard: true},
			true, []string{"ghcr.io"}, "", nil},
		{"config's guard path is rewritten to the guard's volume", func(c *config.Config) {
			c.Ledger.CheckpointFile = "/srv/guard/checkpoint"
		}, Options{Registries: []string{"ghcr.io"}}, true, []string{"ghcr.io"}, guardPath, nil},
		{"guard off against the config", func(c *config.Config) {
			c.Ledger.CheckpointFile = "/srv/guard/checkpoint"
		}, Options{Registries: []string{"ghcr.io"}, NoCheckpointGuard: true}, false, nil, "", ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.modify(c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			srv, err := ServerFiles(c, tt.o)
			if tt.err != nil || err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ServerFiles() = %v, want %v", err, tt.err)
				}
				return
			}
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, srv.Config, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("the server would refuse its config: %v\n%s", err, srv.Config)
			}
			var hosts []string
			for _, r := range got.Registries {
				hosts = append(hosts, r.Host)
			}
			if got.RegistryAllowList != tt.allowList || !slices.Equal(hosts, tt.registries) {
				t.Errorf("registryAllowList %v with %v, want %v with %v", got.RegistryAllowList, hosts, tt.allowList, tt.registries)
			}
			if got.Ledger.CheckpointFile != tt.guard || srv.Guard != (tt.guard != "") {
				t.Errorf("checkpointFile %q (guard %v), want %q", got.Ledger.CheckpointFile, srv.Guard, tt.guard)
			}
		})
	}
}

// TestGuardPathAccepted opens a real ledger with the generated paths, under
// a temporary root: the ledger refuses a guard inside its own directory,
// and the generated one must not be.
func TestGuardPathAccepted(t *testing.T) {
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	srv, err := ServerFiles(config.Default(), Options{Registries: []string{PlaceholderRegistry}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, srv.Config, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	open := func(guard string) error {
		l, err := ledger.Open(filepath.Join(root, cfg.LedgerPath()), ledger.WithSigner(s), ledger.WithNoSync(),
			ledger.WithCheckpointGuard(filepath.Join(root, guard), v))
		if err == nil {
			err = l.Close()
		}
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, cfg.DataDir), 0o700); err != nil {
		t.Fatal(err)
	}
	// The control: the ledger does refuse a guard on the data volume.
	if err := open(cfg.DataDir + "/" + GuardFile); err == nil {
		t.Fatal("the ledger accepted a guard inside its directory; this test proves nothing")
	}
	if err := open(cfg.Ledger.CheckpointFile); err != nil {
		t.Fatalf("the ledger refuses the generated guard %s: %v", cfg.Ledger.CheckpointFile, err)
	}
}

// TestDeploymentGuard checks the guard's claim and mount: a claim of its
// own, ReadWriteOnce and small, mounted writable where the config keeps
// the checkpoint, with fsGroup making it the non-root user's; and neither
// with the guard off.
func TestDeploymentGuard(t *testing.T) {
	for _, off := range []bool{false, true} {
		o := Options{Stages: []string{"dev"}, Service: "sg", Registries: []string{"ghcr.io"}, NoCheckpointGuard: off}
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		srv, err := ServerFiles(config.Default(), o)
		if err != nil {
			t.Fatal(err)
		}
		o.Server = srv
		var d *appsv1.Deployment
		claims := map[string]*corev1.PersistentVolumeClaim{}
		for _, obj := range Deployment(o) {
			switch obj := obj.(type) {
			case *appsv1.Deployment:
				d = obj
			case *corev1.PersistentVolumeClaim:
				claims[obj.Name] = obj
			}
		}
		pod := d.Spec.Template.Spec
		vol := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == "guard" })
		mnt := slices.IndexFunc(pod.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "guard" })
		pvc := claims["sg-guard"]
		if off {
			if vol >= 0 || mnt >= 0 || pvc != nil {
				t.Errorf("guard off: volume %d, mount %d, claim %v", vol, mnt, pvc)
			}
			continue
		}
		if pvc == nil || claims["sg-data"] == nil {
			t.Fatalf("claims %v, want sg-data and sg-guard", claims)
		}
		size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		if !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) || size.Cmp(resource.MustParse("16Mi")) != 0 {
			t.Errorf("guard claim %+v, want ReadWriteOnce 16Mi", pvc.Spec)
		}
		if vol < 0 || mnt < 0 {
			t.Fatalf("no guard volume (%d) or mount (%d)", vol, mnt)
		}
		v, m := pod.Volumes[vol], pod.Containers[0].VolumeMounts[mnt]
		if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "sg-guard" || v.PersistentVolumeClaim.ReadOnly {
			t.Errorf("guard volume %+v, want the writable claim sg-guard", v.VolumeSource)
		}
		if m.MountPath != GuardDir || m.ReadOnly {
			t.Errorf("guard mount %+v, want %s, writable", m, GuardDir)
		}
		if sc := pod.SecurityContext; sc.FSGroup == nil || *sc.FSGroup != *sc.RunAsUser {
			t.Errorf("fsGroup %v, want the server's user %d, so that the claim is writable", sc.FSGroup, *sc.RunAsUser)
		}
	}
}

// TestDeploymentDefaultsServer: with no Server, Deployment renders the
// defaults with the allow-list on, naming the placeholder unless hosts are
// given, and the guard.
func TestDeploymentDefaultsServer(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want []string
	}{
		{Options{Stages: []string{"dev"}}, []string{PlaceholderRegistry}},
		{Options{Stages: []string{"dev"}, Registries: []string{"ghcr.io"}}, []string{"ghcr.io"}},
	} {
		var cm *corev1.ConfigMap
		for _, obj := range Deployment(tt.o) {
			if c, ok := obj.(*corev1.ConfigMap); ok && c.Name == "stagegate-config" {
				cm = c
			}
		}
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(cm.Data[ConfigFile]), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := got.Validate(); err != nil {
			t.Fatal(err)
		}
		var hosts []string
		for _, r := range got.Registries {
			hosts = append(hosts, r.Host)
		}
		if !got.RegistryAllowList || !slices.Equal(hosts, tt.want) || got.Ledger.CheckpointFile != GuardDir+"/"+GuardFile {
			t.Errorf("allow-list %v %v, guard %q; want on with %v, and the guard", got.RegistryAllowList, hosts, got.Ledger.CheckpointFile, tt.want)
		}
	}
}
