package cli

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/testutil/golden"
)

func TestClusterTable(t *testing.T) {
	raw := []byte(`{"self":"sg-1","members":[
 {"id":"sg-0","role":"leader","term":3,"leaderID":"sg-0","commitIndex":120,"appliedIndex":120,"lastIndex":120,"ledgerSize":97,"address":"sg-0.peers:8444"},
 {"id":"sg-1","role":"follower","term":3,"leaderID":"sg-0","commitIndex":118,"appliedIndex":117,"lastIndex":120,"lastContact":"2026-12-02T16:33:41Z","ledgerSize":95,"address":"sg-1.peers:8444"},
 {"id":"sg-2","role":"unreachable","term":0,"commitIndex":0,"appliedIndex":0,"lastIndex":0,"ledgerSize":0,"address":"sg-2.peers:8444","nonVoter":true,"error":"dial tcp: connection refused"}]}`)
	var out bytes.Buffer
	if err := printAnswer(Streams{Out: &out}, outputTable, raw, clusterTable(raw)); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, filepath.Join("testdata", "cluster.table"), out.Bytes(), *update)
}

// TestClusterCheckAdopt runs `cluster check-adopt` on a real single
// node's ledger with the cluster config of an upgrade, and on each way
// that upgrade would go wrong: each named, and nothing written (the
// ledger byte for byte as it was, no Raft state made).
func TestClusterCheckAdopt(t *testing.T) {
	dir, _ := seededLedger(t)
	other, _ := seededLedger(t) // another deployment's keys
	ledgerPath := filepath.Join(dir, "ledger.db")
	before, err := os.ReadFile(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	emptyLedger := filepath.Join(t.TempDir(), "ledger.db")
	l, err := ledger.Open(emptyLedger)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	withRaft := t.TempDir()
	store, err := raftboltdb.NewBoltStore(filepath.Join(withRaft, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	store.Close()

	// The config is validated as serve's is: the peer files must exist
	// (the check reads none of them).
	peer := t.TempDir()
	for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(peer, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// section is a cluster config section of three members with extra.
	section := func(extra string) string {
		return "cluster:\n  listen: \":8444\"\n  members: [{id: sg-0, address: \"127.0.0.1:1\"}, {id: sg-1, address: \"127.0.0.1:2\"}, {id: sg-2, address: \"127.0.0.1:3\"}]\n" +
			"  tls: {caFile: " + peer + "/ca.crt, certFile: " + peer + "/tls.crt, keyFile: " + peer + "/tls.key}\n" + extra
	}
	tests := map[string]struct {
		cluster string // the config's cluster section
		args    []string
		want    string // in stdout, or the error when wantErr
		wantErr bool
	}{
		"adoptable, node ID from adopt": {cluster: section("  adopt: sg-0\n"),
			want: "member sg-0 can adopt " + ledgerPath + ": 3 entries verify with this config's keys"},
		"adoptable, the adopter's own config": {cluster: section("  nodeID: sg-0\n  adopt: sg-0\n"),
			want: "Start every other member with an empty data directory"},
		"single node config": {wantErr: true, want: "this config has no cluster section"},
		"no adopt": {cluster: section("  nodeID: sg-0\n"), wantErr: true,
			want: "cluster.adopt is not set: the members would bootstrap a new, empty cluster"},
		"another member's config": {cluster: section("  nodeID: sg-1\n  adopt: sg-0\n"), wantErr: true,
			want: "this is member sg-1's config, and cluster.adopt names sg-0"},
		"no ledger": {cluster: section("  adopt: sg-0\n"), args: []string{"--ledger", filepath.Join(t.TempDir(), "ledger.db")}, wantErr: true,
			want: "no ledger to adopt"},
		"empty ledger": {cluster: section("  adopt: sg-0\n"), args: []string{"--ledger", emptyLedger}, wantErr: true,
			want: "is empty: member sg-0 would join instead of adopting"},
		"another deployment's ledger": {cluster: section("  adopt: sg-0\n"), args: []string{"--ledger", filepath.Join(other, "ledger.db")}, wantErr: true,
			want: "fails verification with this config's keys, so adoption would refuse it"},
		"raft state already": {cluster: section("  adopt: sg-0\n" + "  dataDir: " + withRaft + "\n"), wantErr: true,
			want: "already holds Raft state"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfgPath := filepath.Join(t.TempDir(), "stagegate.yaml")
			if err := os.WriteFile(cfgPath, []byte("dataDir: "+dir+"\n"+tc.cluster+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, _, err := run(t, append([]string{"cluster", "check-adopt", "--config", cfgPath}, tc.args...)...)
			switch {
			case tc.wantErr && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("check-adopt: %v (stdout %q), want an error saying %q", err, out, tc.want)
			case !tc.wantErr && (err != nil || !strings.Contains(out, tc.want)):
				t.Fatalf("check-adopt: %v, stdout %q, want it to say %q", err, out, tc.want)
			}
			after, err := os.ReadFile(ledgerPath)
			if err != nil || !bytes.Equal(after, before) {
				t.Fatalf("the ledger changed (%v)", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "raft")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the check made Raft state in %s/raft: %v", dir, err)
			}
		})
	}
}
