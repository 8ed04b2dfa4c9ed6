package cli

import (
	"bytes"
	"path/filepath"
	"testing"

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
