package cluster_test

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkPropose is one promotion per proposal, one proposer, fsync on:
// the latency of commit on a quorum plus apply on the leader. Proposals
// are serialised today, so this is also the write throughput.
func BenchmarkPropose(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			c := newCluster(b, nodes)
			lead := c.nodes[c.leader()]
			b.ResetTimer()
			for i := range b.N {
				if _, err := lead.Propose(context.Background(), c.k.build(b, digest(i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proposals/s")
		})
	}
}
