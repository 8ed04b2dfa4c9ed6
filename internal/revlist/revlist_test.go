package revlist_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/revlist"
	"github.com/stagegate/stagegate/internal/signing"
)

const ref = "reg.example:5000/stagegate/revocations:latest"

type pushed struct {
	ref string
	env []byte
}

func (p *pushed) PutEnvelope(_ context.Context, reference string, envelope []byte, _ map[string]string) error {
	p.ref, p.env = reference, envelope
	return nil
}

func keys(t *testing.T) (*signing.Signer, *signing.Verifier) {
	t.Helper()
	dir := t.TempDir()
	if err := signing.GenerateKeys(dir, nil, "stagegate.test/log"); err != nil {
		t.Fatal(err)
	}
	s, err := signing.LoadSigner(filepath.Join(dir, signing.CosignKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func digest(n byte) string { return "sha256:" + strings.Repeat(string("0123456789abcdef"[n%16]), 64) }

func appendEntry(t *testing.T, l *ledger.Ledger, e ledger.Entry) {
	t.Helper()
	if _, err := l.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
		e.Index, e.Time = index, time.Date(2026, 1, 1, 0, 0, int(index), 0, time.UTC)
		return &e, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPublishListsOwnRevocations(t *testing.T) {
	signer, verifier := keys(t)
	l, logKey := ledgertest.New(t)
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	p := &pushed{}
	pub := revlist.NewPublisher(l, logKey, signer, p, ref, revlist.WithClock(func() time.Time { return at }))

	// An empty ledger publishes an empty list: "nothing revoked" is news.
	if _, err := pub.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	list, err := revlist.Verify(p.env, []*signing.Verifier{verifier})
	if err != nil || len(list.Revocations) != 0 || list.TreeSize != 0 || !list.Issued.Equal(at) {
		t.Fatalf("empty ledger: %+v, %v", list, err)
	}

	env := func(s string) json.RawMessage {
		return json.RawMessage(`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte(s)) + `","signatures":[]}`)
	}
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindPromotion, Repository: "reg/app", Digest: digest(1), Stage: "prod", Envelope: env("p1")})
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: "reg/app", Digest: digest(1), Stage: "prod", Reason: "CVE", Envelope: env("r1")})
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: "reg/app", Digest: digest(2), Stage: "*", Reason: "CVE", Foreign: true, Envelope: env("foreign")})
	if _, err := pub.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: "reg/app", Digest: digest(3), Stage: "prod", Reason: "CVE", Envelope: env("r3")})
	if _, err := pub.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.ref != ref {
		t.Fatalf("pushed to %q, want %q", p.ref, ref)
	}
	list, err = revlist.Verify(p.env, []*signing.Verifier{verifier})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range list.Revocations {
		got = append(got, string(r))
	}
	if want := []string{string(env("r1")), string(env("r3"))}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("revocations = %v, want the own ones in ledger order %v", got, want)
	}
	if list.TreeSize != 4 || !strings.Contains(list.Checkpoint, "\n4\n") {
		t.Fatalf("list covers size %d, checkpoint %q; want 4", list.TreeSize, list.Checkpoint)
	}
}

func TestVerifyRefuses(t *testing.T) {
	signer, verifier := keys(t)
	_, other := keys(t)
	sign := func(predicateType, digest string, pred any) []byte {
		st, err := signing.NewStatement("reg/x", digest, predicateType, pred)
		if err != nil {
			t.Fatal(err)
		}
		env, err := signer.Sign(st)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	emptySum := "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	good := signing.RevocationListPredicate{Issued: time.Now()}
	tests := map[string]struct {
		env  []byte
		keys []*signing.Verifier
		want string
	}{
		"another key":          {env: sign(signing.RevocationListPredicateType, emptySum, good), keys: []*signing.Verifier{other}, want: "no trusted key verifies it"},
		"no keys":              {env: sign(signing.RevocationListPredicateType, emptySum, good), want: "no trusted keys"},
		"a revocation instead": {env: sign(signing.RevocationPredicateType, emptySum, good), keys: []*signing.Verifier{verifier}, want: "predicate type"},
		"no issued time":       {env: sign(signing.RevocationListPredicateType, emptySum, signing.RevocationListPredicate{}), keys: []*signing.Verifier{verifier}, want: "no issued time"},
		"subject not its checkpoint": {env: sign(signing.RevocationListPredicateType, digest(7), good), keys: []*signing.Verifier{verifier},
			want: "subject is not its checkpoint"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := revlist.Verify(tc.env, tc.keys)
			if !errors.Is(err, revlist.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v, want ErrInvalid saying %q", err, tc.want)
			}
		})
	}
	if _, err := revlist.Verify(sign(signing.RevocationListPredicateType, emptySum, good), []*signing.Verifier{other, verifier}); err != nil {
		t.Fatalf("Verify of a good list by the second key: %v", err)
	}
}
