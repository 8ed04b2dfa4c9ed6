package ha

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/revlist"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

// The revocation list of a cluster is published by its leader alone
// (internal/revlist WithLeader), and a new leader publishes at once: with
// `every` an hour, the only way a list dated after the leader's SIGKILL
// reaches the registry before any new revocation is the hand-over. A
// revocation made afterwards, through a follower, is in the next list.
func TestRevocationListHandsOverOnFailover(t *testing.T) {
	const repo = "stagegate/revocations"
	h := newHA(t, 3, withConfigOf(func(registry string) string {
		return fmt.Sprintf("revocationList: {reference: %q, every: 1h}\n", registry+"/"+repo+":latest")
	}))
	ref := h.reg.Repo(repo) + ":latest"
	var first signing.RevocationListPredicate
	h.waitFor("the first leader's list", func() bool {
		var err error
		first, err = readList(t, ref)
		return err == nil
	})
	if len(first.Revocations) != 0 {
		t.Fatalf("first list holds %d revocations, want none", len(first.Revocations))
	}

	lead := h.leader(0)
	killed := time.Now()
	h.nodes[lead].Kill()
	other := (lead + 1) % 3
	h.leader(other)
	var handed signing.RevocationListPredicate
	h.waitFor("a list dated after the leader died", func() bool {
		l, err := readList(t, ref)
		handed = l
		return err == nil && l.Issued.After(killed)
	})
	if len(handed.Revocations) != 0 {
		t.Fatalf("new leader's list holds %d revocations, want none", len(handed.Revocations))
	}

	img := must(h.pushImage("app"))
	h.mustPromote(other, img)
	code, b, err := h.do(context.Background(), other, http.MethodPost, "/v1/revocations", h.tokens[0],
		map[string]string{"digest": digestOf(img), "stage": "dev", "reason": "CVE"})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("revoke: %d %v %s", code, err, b)
	}
	h.waitFor("the revocation in the list", func() bool {
		l, err := readList(t, ref)
		return err == nil && len(l.Revocations) == 1
	})
}

// readList reads and verifies the list at ref, or says why not.
func readList(t *testing.T, ref string) (signing.RevocationListPredicate, error) {
	att := oci.NewAttacher(oci.WithReferenceParser(func(s string) (name.Reference, error) { return name.ParseReference(s, name.Insecure) }))
	env, err := att.GetEnvelope(context.Background(), ref, revlist.MaxBytes)
	if err != nil {
		return signing.RevocationListPredicate{}, err
	}
	return revlist.Verify(env, []*signing.Verifier{signingtest.Verifier(t)})
}
