package ha

import (
	"strings"
	"testing"
)

// A non-voter replicates and serves admission, and `cluster status` says
// it does not vote; a promotion sent to it is forwarded to the leader.
func TestNonVoterServesAdmission(t *testing.T) {
	h := newHA(t, 3, withNonVoter(2))
	ref := must(h.pushImage("app"))
	h.mustPromote(2, ref) // forwarded by the non-voter
	h.waitFor("sg-2 to apply it", func() bool {
		r, err := h.admit(2, "dev", ref)
		return err == nil && r.Allowed
	})
	out, stderr, err := h.nodes[2].Run(t, h.nodes[2].ClientFlags("cluster", "status", "-o", "table")...)
	if err != nil {
		t.Fatalf("cluster status: %v\n%s", err, stderr)
	}
	var row []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "sg-2 ") {
			row = strings.Fields(line)
		}
	}
	if len(row) < 4 || row[2] != "follower" || row[3] != "no" {
		t.Fatalf("cluster status does not show sg-2 as a non-voting follower:\n%s", out)
	}
	if lead := h.leader(2); lead == 2 {
		t.Fatal("the non-voter leads")
	}
}
