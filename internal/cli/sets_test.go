package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
)

// TestPromoteSet: `promote A B --stage dev -o FILE` records a set, `receipt
// verify FILE` accepts it, status names the set, and a set with a missing
// image records nothing.
func TestPromoteSet(t *testing.T) {
	srv := startTLSServer(t, []api.Token{{SHA256: api.HashToken("ci-token"), Subject: "ci", Groups: []string{"pipeline"}}},
		func(*config.Config) {})
	size := func() uint64 {
		n, err := srv.app.Ledger.Size()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	missing := strings.Replace(srv.sample.Image, "sample/app:1.0", "sample/config:gone", 1)
	_, stderr, err := srv.as("ci-token", "promote", srv.sample.Image, missing, "--stage", "dev", "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "nothing recorded") || !strings.Contains(err.Error(), "sample/config:gone") {
		t.Fatalf("a set with a missing image: err %v (stderr %s), want a refusal naming it", err, stderr)
	}
	if n := size(); n != 0 {
		t.Fatalf("ledger has %d entries after a refused set", n)
	}

	file := filepath.Join(t.TempDir(), "set.json")
	_, stderr, err = srv.as("ci-token", "promote", srv.sample.Image, srv.sample.Index, "--stage", "dev", "--reason", "release 7", "-o", file)
	if err != nil {
		t.Fatalf("promote set: %v\n%s", err, stderr)
	}
	for _, want := range []string{"promoted " + srv.sample.Image[:strings.LastIndex(srv.sample.Image, ":")] + "@sha256:", "(ledger entry 1)", "promotion set of 2 to dev"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	keys := filepath.Join(srv.dir, "keys")
	out, _, err := run(t, "receipt", "verify", file, "--key", filepath.Join(keys, "cosign.pub"), "--log-key", filepath.Join(keys, "log.pub"))
	if err != nil || !strings.Contains(out, "set receipt verified: 2 promotions to stage dev") {
		t.Fatalf("receipt verify: %v\n%s", err, out)
	}
	_, stderr, err = srv.as("ci-token", "promote", srv.sample.Image, srv.sample.Index, "--stage", "dev", "-o", "json")
	if err != nil || strings.Count(stderr, "already promoted") != 2 || size() != 2 {
		t.Fatalf("retry: %v, stderr %q, size %d; want both already promoted and nothing recorded", err, stderr, size())
	}
	out, _, err = srv.as("ci-token", "status", strings.TrimSuffix(srv.sample.Image, ":1.0"), "-o", "table")
	if err != nil || !strings.Contains(out, "promotion (set of 2: entries 0, 1)") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if _, _, err := srv.as("ci-token", "promote", srv.sample.Image, srv.sample.Index, "--stage", "dev", "--wait"); err == nil {
		t.Fatal("--wait with a set was accepted")
	}
}
