package app

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/config"
)

// startMode without the network: the choices a member makes from its own
// disk. (The adopting member's check of the others is in test/e2e/ha.)
func TestStartMode(t *testing.T) {
	members := []config.Member{{ID: "sg-0", Address: "a:1"}, {ID: "sg-1", Address: "b:1"}}
	for name, tc := range map[string]struct {
		self, adopt string
		size        uint64
		want        string
		wantErr     string
	}{
		"a new cluster bootstraps":              {self: "sg-1", want: cluster.StartBootstrap},
		"a new cluster bootstraps with entries": {self: "sg-0", size: 3, want: cluster.StartBootstrap},
		"another member adopts: join":           {self: "sg-1", adopt: "sg-0", want: cluster.StartJoin},
		"another member adopts, but this one holds a ledger": {self: "sg-1", adopt: "sg-0", size: 4,
			wantErr: "member sg-0 adopts its ledger, but this member (sg-1) holds a ledger of 4 entries of its own"},
		"the adopting member wiped: join": {self: "sg-0", adopt: "sg-0", want: cluster.StartJoin},
	} {
		t.Run(name, func(t *testing.T) {
			r := &replica{cfg: config.Cluster{NodeID: tc.self, DataDir: t.TempDir(), Members: members, Adopt: tc.adopt},
				log: slog.New(slog.DiscardHandler)}
			got, err := r.startMode(context.Background(), tc.size)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
