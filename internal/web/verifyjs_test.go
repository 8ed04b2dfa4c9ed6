package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/internal/testutil/browser"
)

// The tests below run assets/verify.js in a real headless Chromium against
// vectors that the Go side makes for real: a bbolt ledger signing
// checkpoints with the log key, DSSE envelopes signed by signing.Signer,
// inclusion and consistency proofs from the ledger. Every case also asks
// the Go verifier (ledger.VerifyReceipt with signing.TrustedEntryCheck),
// so that the browser is held to what `stagegate receipt verify` decides.

const (
	repo = "registry.test/shop/web"
	size = 10 // entries in the ledger of newFixture
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func requester() signing.Requester {
	return signing.Requester{Subject: "alice", Groups: []string{"release"}}
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// item is one element of GET /ui/api/entries' "entries".
type item struct {
	Index uint64   `json:"index"`
	Leaf  []byte   `json:"leaf"`  // std base64 in JSON
	Proof [][]byte `json:"proof"` // likewise
}

// keysDoc is GET /ui/api/keys.
type keysDoc struct {
	Log     string   `json:"log"`
	Cosign  string   `json:"cosign"`
	Trusted []string `json:"trusted"`
}

type fixture struct {
	keys, keysNoTrust keysDoc
	ledger            *ledger.Ledger
	entries           []ledger.Entry
	items             []item
	cps               map[uint64]string // signed checkpoint after each append, by size
	check             func(ledger.Entry) error
	logVerifier       note.Verifier
}

func sign(t testing.TB, s *signing.Signer, repository, dig, ptype string, pred any) json.RawMessage {
	t.Helper()
	st, err := signing.NewStatement(repository, dig, ptype, pred)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Sign(st)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// entryFor makes the entry of kind at index, signed by our key as the
// promotion service signs it, with reason (which a fork rewrites).
func entryFor(t testing.TB, kind ledger.Kind, index uint64, stage, dig, reason string) ledger.Entry {
	t.Helper()
	s := signingtest.Signer(t)
	at := t0.Add(time.Duration(index) * time.Minute)
	e := ledger.Entry{Index: index, Kind: kind, Repository: repo, Digest: dig, Stage: stage,
		Subject: "alice", Groups: []string{"release"}, Reason: reason, Time: at}
	switch kind {
	case ledger.KindPromotion:
		e.Labels = map[string]string{"org.opencontainers.image.source": "https://git.test/shop/web"}
		e.Envelope = sign(t, s, repo, dig, signing.PromotionPredicateType, signing.PromotionPredicate{
			Stage: stage, Repository: repo, Requester: requester(), Reason: reason, Time: at, LedgerIndex: index, Labels: e.Labels,
			Evidence: map[string]any{"pipeline": "https://ci.test/run/7"}})
	case ledger.KindRevocation:
		e.Envelope = sign(t, s, repo, dig, signing.RevocationPredicateType, signing.RevocationPredicate{
			Stage: stage, Repository: repo, Requester: requester(), Reason: reason, Time: at, LedgerIndex: index})
	case ledger.KindBreakGlass:
		// As promotion.RecordBreakGlass: the subject is the workload.
		e.Workload = "shop/Deployment/web"
		e.Repository, e.Digest = e.Workload, digest(e.Workload)
		e.Images = []string{repo + ":hotfix"}
		e.Envelope = sign(t, s, e.Repository, e.Digest, signing.BreakGlassPredicateType, signing.BreakGlassPredicate{
			Stage: stage, Workload: e.Workload, Images: e.Images, Requester: requester(), Reason: reason, Time: at, LedgerIndex: index})
	case ledger.KindRequest:
		e.Envelope = sign(t, s, repo, dig, signing.RequestPredicateType, signing.RequestPredicate{
			Stage: stage, Repository: repo, Requester: requester(), Reason: reason, Time: at, LedgerIndex: index,
			Required: 1, Expires: at.Add(time.Hour)})
	case ledger.KindApproval:
		req := index - 1
		e.Request = &req
		e.Envelope = sign(t, s, repo, dig, signing.ApprovalPredicateType, signing.AnswerPredicate{
			Stage: stage, Repository: repo, Request: req, Requester: signing.Requester{Subject: "bob"}, Reason: reason, Time: at, LedgerIndex: index})
	default:
		t.Fatalf("entryFor: kind %q", kind)
	}
	return e
}

// buildEntries is the ledger's content; rewrite changes the reason of
// entry 2, as a log that forks its history would.
func buildEntries(t testing.TB, rewrite bool) []ledger.Entry {
	d1, d2, d3 := digest("image one"), digest("image two"), digest("image three")
	reason := "CVE-2026-0001"
	if rewrite {
		reason = "nothing happened"
	}
	es := []ledger.Entry{
		entryFor(t, ledger.KindPromotion, 0, "dev", d1, "first build"),
		entryFor(t, ledger.KindPromotion, 1, "prod", d1, "release 1.0"),
		entryFor(t, ledger.KindRevocation, 2, "prod", d1, reason),
		entryFor(t, ledger.KindBreakGlass, 3, "prod", "", "outage INC-9"),
		entryFor(t, ledger.KindRequest, 4, "prod", d2, "release 1.1"),
		entryFor(t, ledger.KindApproval, 5, "prod", d2, "looks good"),
	}
	// 6: imported from another stagegate, whose key we trust; its
	// envelope carries that ledger's index, 41.
	foreignEnv := sign(t, signingtest.ForeignSigner(t), repo, d3, signing.PromotionPredicateType, signing.PromotionPredicate{
		Stage: "test", Repository: repo, Requester: signing.Requester{Subject: "carol"}, Time: t0, LedgerIndex: 41})
	fe, err := signing.ForeignEntry(foreignEnv, []*signing.Verifier{signingtest.ForeignVerifier(t)})
	if err != nil {
		t.Fatal(err)
	}
	fe.Index = 6
	// 7: entry 1 replayed: the same promotion with its envelope, validly
	// signed, at another index; only the predicate's ledgerIndex tells.
	stolen := es[1]
	stolen.Index = 7
	// 8: a promotion signed by a key that is not ours.
	forged := entryFor(t, ledger.KindPromotion, 8, "dev", d3, "forged")
	forged.Envelope = sign(t, signingtest.ForeignSigner(t), repo, d3, signing.PromotionPredicateType, signing.PromotionPredicate{
		Stage: "dev", Repository: repo, Requester: requester(), Time: forged.Time, LedgerIndex: 8})
	return append(es, fe, stolen, forged, entryFor(t, ledger.KindPromotion, 9, "test", d2, "release 1.1"))
}

// openLedger appends entries to a new ledger signed with the log key, and
// returns it and the checkpoint after each append.
func openLedger(t testing.TB, entries []ledger.Entry) (*ledger.Ledger, map[uint64]string) {
	t.Helper()
	l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), ledger.WithSigner(signingtest.LogSigner(t)), ledger.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	cps := map[uint64]string{}
	for _, e := range entries {
		rc, err := l.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			if index != e.Index {
				return nil, fmt.Errorf("append at %d, entry %d", index, e.Index)
			}
			return &e, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cps[rc.Inclusion.TreeSize] = rc.Checkpoint
	}
	return l, cps
}

// itemsOf answers what GET /ui/api/entries would for entries [0, n) up to
// the checkpoint at n.
func itemsOf(t testing.TB, l *ledger.Ledger, n uint64) ([]ledger.Entry, []item) {
	t.Helper()
	entries, err := l.Entries(0, n)
	if err != nil {
		t.Fatal(err)
	}
	items := make([]item, len(entries))
	for i, e := range entries {
		leaf, err := json.Marshal(&e) // the canonical encoding is the leaf
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.InclusionProof(e.Index, n)
		if err != nil {
			t.Fatal(err)
		}
		items[i] = item{Index: e.Index, Leaf: leaf, Proof: p.Hashes}
	}
	return entries, items
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	signingtest.WriteKeyDir(t, dir)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	foreignPEM, err := signingtest.ForeignSigner(t).PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		keys:        keysDoc{Log: read(signing.LogPubFile), Cosign: read(signing.CosignPubFile), Trusted: []string{string(foreignPEM)}},
		check:       signing.TrustedEntryCheck(signingtest.Verifier(t), []*signing.Verifier{signingtest.ForeignVerifier(t)}),
		logVerifier: signingtest.LogVerifier(t),
	}
	f.keysNoTrust = f.keys
	f.keysNoTrust.Trusted = []string{}
	f.ledger, f.cps = openLedger(t, buildEntries(t, false))
	f.entries, f.items = itemsOf(t, f.ledger, size)
	return f
}

// harness serves verify.js and the harness page on 127.0.0.1 (a secure
// context, so WebCrypto is there) and opens it in a browser. The file
// server types .js as text/javascript, without which Chromium refuses to
// run a module.
func harness(t *testing.T) page {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServer(http.Dir("assets"))))
	mux.Handle("GET /", http.FileServer(http.Dir("testdata")))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ctx := browser.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/harness.html")); err != nil {
		t.Fatal(err)
	}
	// Module scripts run before the load event that Navigate waits for.
	ready, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.harnessReady === true && window.isSecureContext`))
	if err != nil || !ready {
		t.Fatalf("harness not ready (secure context, verify.js loaded): %v %v", ready, err)
	}
	return page{ctx}
}

type page struct{ ctx context.Context }

// outcome is what each harness function answers.
type outcome struct {
	OK      bool            `json:"ok"`
	Check   string          `json:"check"`
	Message string          `json:"message"`
	Name    string          `json:"name"`
	Value   json.RawMessage `json:"value"`
}

// call runs harness.fn(args...) with each argument passed as JSON.
func (p page) call(t *testing.T, fn string, args ...any) outcome {
	t.Helper()
	js := make([]string, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		js[i] = string(b)
	}
	raw, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]byte](fmt.Sprintf("harness.%s(%s)", fn, strings.Join(js, ", ")), chromedp.EvalAwaitPromise))
	var o outcome
	if err == nil {
		err = json.Unmarshal(raw, &o)
	}
	if err != nil {
		t.Fatalf("harness.%s: %v", fn, err)
	}
	return o
}

// expect checks an outcome: wantCheck "" is success, else the check that
// must fail, with wantMsg in its message.
func expect(t *testing.T, o outcome, wantCheck, wantMsg string) {
	t.Helper()
	switch {
	case wantCheck == "" && !o.OK:
		t.Fatalf("failed (%s %s): %s", o.Name, o.Check, o.Message)
	case wantCheck != "" && o.OK:
		t.Fatalf("verified, want the %s check to fail; value %s", wantCheck, o.Value)
	case wantCheck != "" && (o.Check != wantCheck || !strings.Contains(o.Message, wantMsg)):
		t.Fatalf("failed the %q check with %q, want the %q check with %q", o.Check, o.Message, wantCheck, wantMsg)
	}
	if !o.OK {
		t.Logf("%s: %s", o.Check, o.Message)
	}
}

func TestVerifyJS(t *testing.T) {
	f := newFixture(t)
	p := harness(t)
	t.Run("checkpoint", func(t *testing.T) { testCheckpoint(t, f, p) })
	t.Run("entry", func(t *testing.T) { testEntry(t, f, p) })
	t.Run("consistency", func(t *testing.T) { testConsistency(t, f, p) })
	t.Run("verifyAll", func(t *testing.T) { testVerifyAll(t, f, p) })
}

// signNote signs a checkpoint body with s, as the ledger does.
func signNote(t *testing.T, s note.Signer, body string, more ...note.Signer) string {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: body}, append([]note.Signer{s}, more...)...)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testCheckpoint(t *testing.T, f *fixture, p page) {
	good := f.cps[size]
	want, err := ledger.ParseCheckpoint(good, f.logVerifier)
	if err != nil {
		t.Fatal(err)
	}
	root64 := base64.StdEncoding.EncodeToString(want.Root)
	body := func(origin, size, root string) string { return origin + "\n" + size + "\n" + root + "\n" }
	own := signingtest.LogSigner(t)
	// The last base64 digit of a 32-byte root carries two padding bits;
	// setting one keeps the bytes and breaks strictness.
	const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	loose := root64[:42] + string(digits[strings.IndexByte(digits, root64[42])^1]) + "="
	flipSig := func(text string) string {
		i := strings.LastIndex(text, " ")
		sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text[i+1:]))
		if err != nil {
			t.Fatal(err)
		}
		sig[len(sig)-1] ^= 1
		return text[:i+1] + base64.StdEncoding.EncodeToString(sig) + "\n"
	}
	badHashKey := f.keys
	parts := strings.SplitN(strings.TrimSpace(f.keys.Log), "+", 3)
	badHashKey.Log = parts[0] + "+00000000+" + parts[2]
	for name, tt := range map[string]struct {
		keys      keysDoc
		text      string
		wantCheck string
		wantMsg   string
	}{
		"signed by the log key":                {text: good},
		"cosigned by a witness":                {text: signNote(t, own, body(signingtest.LogName, "10", root64), signingtest.ForeignLogSigner(t, "witness.test/w1"))},
		"another key of the same name":         {text: signNote(t, signingtest.ForeignLogSigner(t, signingtest.LogName), body(signingtest.LogName, "10", root64)), wantCheck: "checkpoint", wantMsg: "no signature by " + signingtest.LogName + "+"},
		"signature bytes flipped":              {text: flipSig(good), wantCheck: "checkpoint", wantMsg: "invalid signature by " + signingtest.LogName},
		"size edited after signing":            {text: strings.Replace(good, "\n10\n", "\n11\n", 1), wantCheck: "checkpoint", wantMsg: "invalid signature"},
		"other origin":                         {text: signNote(t, own, body("other.test/log", "10", root64)), wantCheck: "checkpoint", wantMsg: `origin "other.test/log", want "` + signingtest.LogName + `"`},
		"size with a leading zero":             {text: signNote(t, own, body(signingtest.LogName, "010", root64)), wantCheck: "checkpoint", wantMsg: `malformed size "010"`},
		"negative size":                        {text: signNote(t, own, body(signingtest.LogName, "-1", root64)), wantCheck: "checkpoint", wantMsg: `malformed size "-1"`},
		"size not a number":                    {text: signNote(t, own, body(signingtest.LogName, "ten", root64)), wantCheck: "checkpoint", wantMsg: `malformed size "ten"`},
		"root of 31 bytes":                     {text: signNote(t, own, body(signingtest.LogName, "10", base64.StdEncoding.EncodeToString(want.Root[:31]))), wantCheck: "checkpoint", wantMsg: "malformed root hash"},
		"root with padding bits set":           {text: signNote(t, own, body(signingtest.LogName, "10", loose)), wantCheck: "checkpoint", wantMsg: "malformed root hash"},
		"two body lines":                       {text: signNote(t, own, signingtest.LogName+"\n10\n"), wantCheck: "checkpoint", wantMsg: "2 body lines, want 3"},
		"no signature block":                   {text: body(signingtest.LogName, "10", root64), wantCheck: "checkpoint", wantMsg: "malformed note"},
		"log key whose hash is not of its key": {keys: badHashKey, text: good, wantCheck: "checkpoint", wantMsg: "key hash 00000000 does not match"},
	} {
		t.Run(name, func(t *testing.T) {
			keys := f.keys
			if tt.keys.Log != "" {
				keys = tt.keys
			}
			o := p.call(t, "checkpoint", keys, tt.text)
			expect(t, o, tt.wantCheck, tt.wantMsg)
			if tt.keys.Log == "" {
				if _, err := ledger.ParseCheckpoint(tt.text, f.logVerifier); (err == nil) != (tt.wantCheck == "") {
					t.Fatalf("Go ParseCheckpoint: %v, but the browser says ok=%v", err, o.OK)
				}
			}
			if !o.OK {
				return
			}
			var got struct {
				Origin string `json:"origin"`
				Size   uint64 `json:"size"`
				Root   string `json:"root"`
			}
			if err := json.Unmarshal(o.Value, &got); err != nil {
				t.Fatal(err)
			}
			if got.Origin != want.Origin || got.Size != want.Size || got.Root != root64 {
				t.Fatalf("checkpoint %+v, want %s %d %s", got, want.Origin, want.Size, root64)
			}
		})
	}
}

// goVerify is the Go verdict on an item, as a receipt verified offline.
func (f *fixture) goVerify(t *testing.T, it item, cp string, trusted bool) error {
	var e ledger.Entry
	if err := json.Unmarshal(it.Leaf, &e); err != nil {
		return err
	}
	parsed, err := ledger.ParseCheckpoint(cp, f.logVerifier)
	if err != nil {
		return err
	}
	check := f.check
	if !trusted {
		check = signing.TrustedEntryCheck(signingtest.Verifier(t), nil)
	}
	rc := ledger.Receipt{Entry: e, Checkpoint: cp,
		Inclusion: ledger.InclusionProof{LeafIndex: it.Index, TreeSize: parsed.Size, Hashes: it.Proof}}
	return ledger.VerifyReceipt(rc, f.logVerifier, check)
}

func (f *fixture) item(i int, edit func(*item)) item {
	it := f.items[i]
	it.Leaf = append([]byte(nil), it.Leaf...)
	it.Proof = append([][]byte(nil), it.Proof...)
	for j := range it.Proof {
		it.Proof[j] = append([]byte(nil), it.Proof[j]...)
	}
	if edit != nil {
		edit(&it)
	}
	return it
}

func testEntry(t *testing.T, f *fixture, p page) {
	flipLeaf := func(it *item) {
		// A byte of the reason: the JSON stays valid, only the proof can tell.
		j := strings.Index(string(it.Leaf), "release 1.0")
		it.Leaf[j] = 'R'
	}
	for name, tt := range map[string]struct {
		item       item
		noTrust    bool
		checkpoint uint64 // size of the checkpoint to verify against; 0: the latest
		wantKind   ledger.Kind
		wantCheck  string
		wantMsg    string
	}{
		"promotion":                          {item: f.item(0, nil), wantKind: ledger.KindPromotion},
		"promotion to prod":                  {item: f.item(1, nil), wantKind: ledger.KindPromotion},
		"revocation":                         {item: f.item(2, nil), wantKind: ledger.KindRevocation},
		"break-glass":                        {item: f.item(3, nil), wantKind: ledger.KindBreakGlass},
		"request":                            {item: f.item(4, nil), wantKind: ledger.KindRequest},
		"approval":                           {item: f.item(5, nil), wantKind: ledger.KindApproval},
		"foreign entry with a trusted key":   {item: f.item(6, nil), wantKind: ledger.KindPromotion},
		"foreign entry without trusted keys": {item: f.item(6, nil), noTrust: true, wantCheck: "signature", wantMsg: "foreign entry, and no trusted keys"},
		"entry replayed at another index":    {item: f.item(7, nil), wantCheck: "statement", wantMsg: "statement does not describe the entry: predicate ledgerIndex 1, entry index 7"},
		"envelope signed by another key":     {item: f.item(8, nil), wantCheck: "signature", wantMsg: "entry 8: no signature of the envelope verifies"},
		"flipped byte in the leaf":           {item: f.item(1, flipLeaf), wantCheck: "inclusion", wantMsg: "entry 1 and its proof lead to root"},
		"wrong proof hash":                   {item: f.item(1, func(it *item) { it.Proof[1][0] ^= 1 }), wantCheck: "inclusion", wantMsg: "does not match checkpoint root"},
		"proof one hash short":               {item: f.item(1, func(it *item) { it.Proof = it.Proof[:len(it.Proof)-1] }), wantCheck: "inclusion", wantMsg: "too few for entry 1"},
		"proof one hash long":                {item: f.item(1, func(it *item) { it.Proof = append(it.Proof, it.Proof[0]) }), wantCheck: "inclusion", wantMsg: "too many for entry 1"},
		"index of another entry":             {item: f.item(1, func(it *item) { it.Index = 0 }), wantCheck: "inclusion", wantMsg: "entry 0 and its proof lead to root"},
		"index past the checkpoint":          {item: f.item(1, func(it *item) { it.Index = 12 }), wantCheck: "inclusion", wantMsg: "index 12 is not below tree size 10"},
		"proof to another checkpoint":        {item: f.item(1, nil), checkpoint: 4, wantCheck: "inclusion", wantMsg: "too many for entry 1 in a tree of size 4"},
		"proof hash not 32 bytes":            {item: f.item(1, func(it *item) { it.Proof[0] = it.Proof[0][:31] }), wantCheck: "inclusion", wantMsg: "hash 0 is not 32 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			keys := f.keys
			if tt.noTrust {
				keys = f.keysNoTrust
			}
			cp := f.cps[size]
			if tt.checkpoint != 0 {
				cp = f.cps[tt.checkpoint]
			}
			o := p.call(t, "entry", keys, cp, tt.item)
			expect(t, o, tt.wantCheck, tt.wantMsg)
			if err := f.goVerify(t, tt.item, cp, !tt.noTrust); (err == nil) != o.OK {
				t.Fatalf("Go says %v, the browser ok=%v", err, o.OK)
			}
			if !o.OK {
				return
			}
			var got struct {
				Index         uint64      `json:"index"`
				Kind          ledger.Kind `json:"kind"`
				PredicateType string      `json:"predicateType"`
			}
			if err := json.Unmarshal(o.Value, &got); err != nil {
				t.Fatal(err)
			}
			wantType, _ := signing.PredicateTypeFor(tt.wantKind)
			if got.Index != tt.item.Index || got.Kind != tt.wantKind || got.PredicateType != wantType {
				t.Fatalf("verified %+v, want entry %d of kind %s with %s", got, tt.item.Index, tt.wantKind, wantType)
			}
		})
	}
}

func testConsistency(t *testing.T, f *fixture, p page) {
	// A log that rewrote entry 2 and signs with the same key.
	fork, forkCPs := openLedger(t, buildEntries(t, true))
	proofOf := func(l *ledger.Ledger, from, to uint64) [][]byte {
		cp, err := l.ConsistencyProof(from, to)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Hashes
	}
	flipped := proofOf(f.ledger, 3, size)
	flipped[0][5] ^= 1
	for name, tt := range map[string]struct {
		older, newer string
		hashes       [][]byte
		wantCheck    string
		wantMsg      string
	}{
		"1 to 10":                   {older: f.cps[1], newer: f.cps[size], hashes: proofOf(f.ledger, 1, size)},
		"3 to 10":                   {older: f.cps[3], newer: f.cps[size], hashes: proofOf(f.ledger, 3, size)},
		"4 to 10":                   {older: f.cps[4], newer: f.cps[size], hashes: proofOf(f.ledger, 4, size)},
		"8 to 10":                   {older: f.cps[8], newer: f.cps[size], hashes: proofOf(f.ledger, 8, size)},
		"9 to 10":                   {older: f.cps[9], newer: f.cps[size], hashes: proofOf(f.ledger, 9, size)},
		"5 to 7":                    {older: f.cps[5], newer: f.cps[7], hashes: proofOf(f.ledger, 5, 7)},
		"10 to 10":                  {older: f.cps[size], newer: f.cps[size], hashes: [][]byte{}},
		"rewritten history":         {older: f.cps[4], newer: forkCPs[size], hashes: proofOf(fork, 4, size), wantCheck: "consistency", wantMsg: "history was rewritten"},
		"two roots at one size":     {older: f.cps[size], newer: forkCPs[size], hashes: [][]byte{}, wantCheck: "consistency", wantMsg: "two roots at size 10"},
		"wrong proof hash":          {older: f.cps[3], newer: f.cps[size], hashes: flipped, wantCheck: "consistency", wantMsg: "history was rewritten"},
		"proof for other sizes":     {older: f.cps[3], newer: f.cps[size], hashes: proofOf(f.ledger, 4, size), wantCheck: "consistency", wantMsg: "consistency:"},
		"newer checkpoint is older": {older: f.cps[size], newer: f.cps[4], hashes: [][]byte{}, wantCheck: "consistency", wantMsg: "the log shrank"},
		"no hashes":                 {older: f.cps[3], newer: f.cps[size], hashes: [][]byte{}, wantCheck: "consistency", wantMsg: "no hashes from size 3 to 10"},
	} {
		t.Run(name, func(t *testing.T) {
			o := p.call(t, "consistency", f.keys, tt.older, tt.newer, tt.hashes)
			expect(t, o, tt.wantCheck, tt.wantMsg)
			older, err1 := ledger.ParseCheckpoint(tt.older, f.logVerifier)
			newer, err2 := ledger.ParseCheckpoint(tt.newer, f.logVerifier)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			err := ledger.VerifyConsistency(older, newer, ledger.ConsistencyProof{From: older.Size, To: newer.Size, Hashes: tt.hashes})
			if (err == nil) != o.OK {
				t.Fatalf("Go says %v, the browser ok=%v", err, o.OK)
			}
		})
	}
}

type allResult struct {
	MS      float64 `json:"ms"`
	Results []struct {
		Index   uint64      `json:"index"`
		OK      bool        `json:"ok"`
		Kind    ledger.Kind `json:"kind"`
		Check   string      `json:"check"`
		Message string      `json:"message"`
	} `json:"results"`
}

func (p page) all(t *testing.T, keys keysDoc, cp string, items []item) allResult {
	t.Helper()
	o := p.call(t, "all", keys, cp, items)
	if !o.OK {
		t.Fatalf("verifyAll: %s: %s", o.Check, o.Message)
	}
	var r allResult
	if err := json.Unmarshal(o.Value, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != len(items) {
		t.Fatalf("%d results for %d items", len(r.Results), len(items))
	}
	return r
}

func testVerifyAll(t *testing.T, f *fixture, p page) {
	r := p.all(t, f.keys, f.cps[size], f.items)
	want := map[uint64]string{7: "statement", 8: "signature"}
	for i, res := range r.Results {
		if res.Index != f.items[i].Index || res.OK != (want[res.Index] == "") || res.Check != want[res.Index] {
			t.Errorf("result %d: %+v, want index %d failing %q", i, res, f.items[i].Index, want[res.Index])
		}
		if res.OK && res.Kind != f.entries[i].Kind {
			t.Errorf("result %d: kind %s, want %s", i, res.Kind, f.entries[i].Kind)
		}
	}
}

// TestVerifyAllPage verifies an image page of 500 entries as the page
// does, and one whose entry a proxy edited, which alone must fail. The
// browser's time is logged (make bench measures it; the goal is 2 s).
func TestVerifyAllPage(t *testing.T) {
	const n = 500
	kinds := []ledger.Kind{ledger.KindPromotion, ledger.KindPromotion, ledger.KindRevocation, ledger.KindPromotion}
	stages := []string{"dev", "test", "stage", "prod"}
	entries := make([]ledger.Entry, n)
	for i := range entries {
		entries[i] = entryFor(t, kinds[i%len(kinds)], uint64(i), stages[i%len(stages)], digest(fmt.Sprint("image ", i/4)), fmt.Sprint("change ", i))
	}
	l, cps := openLedger(t, entries)
	_, items := itemsOf(t, l, n)
	f := newFixture(t)
	p := harness(t)

	r := p.all(t, f.keys, cps[n], items)
	for i, res := range r.Results {
		if !res.OK {
			t.Fatalf("entry %d: %s: %s", i, res.Check, res.Message)
		}
	}
	t.Logf("verifyAll: %d entries in %.0f ms in the browser", n, r.MS)

	const edited = 321
	items[edited].Leaf = []byte(strings.Replace(string(items[edited].Leaf), "change 321", "change 999", 1))
	r = p.all(t, f.keys, cps[n], items)
	for i, res := range r.Results {
		if res.OK != (i != edited) {
			t.Fatalf("entry %d: ok=%v (%s %s), want only entry %d to fail", i, res.OK, res.Check, res.Message, edited)
		}
	}
	if got := r.Results[edited]; got.Check != "inclusion" {
		t.Fatalf("edited entry: %s: %s, want the inclusion check", got.Check, got.Message)
	}
	t.Logf("verifyAll with one edited entry: %.0f ms", r.MS)
}
