package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkPropose is one promotion per proposal, fsync on, on 1 and 3
// nodes, from one client (the latency of commit on a quorum plus apply on
// the leader) and from 16 at once (the throughput, with group commit).
func BenchmarkPropose(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("nodes=%d/clients=%d", nodes, clients), func(b *testing.B) {
				c := newCluster(b, nodes)
				lead := c.nodes[c.leader()]
				var next atomic.Int64
				b.ResetTimer()
				var wg sync.WaitGroup
				for range clients {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							if _, err := lead.Propose(context.Background(), c.k.build(b, digest(int(i)))); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proposals/s")
			})
		}
	}
}
