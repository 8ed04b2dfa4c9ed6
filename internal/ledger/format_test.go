package ledger_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// formatExample is the worked example of docs/ledger-format.md: two
// entries whose fields show the encoding's rules (omitted empty fields,
// sorted map keys, HTML-safe escapes, a compacted envelope).
func formatExample() []ledger.Entry {
	return []ledger.Entry{{
		Kind: ledger.KindPromotion, Repository: "registry.example/team/app", Digest: digest(1), Stage: "prod",
		Subject: "ci@example.com", Groups: []string{"release"}, Reason: "tests <green> & signed",
		Labels:   map[string]string{"team": "a", "org.opencontainers.image.source": "https://git.example/app"},
		Envelope: []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`),
	}, {
		Kind: ledger.KindRevocation, Repository: "registry.example/team/app", Digest: digest(1), Stage: "*",
		Subject: "sec@example.com", Reason: "CVE-2026-0001",
	}}
}

// TestLeafEncodingDocumented builds the example in a real ledger, computes
// its leaf hashes and root by hand from RFC 6962, and checks both against
// testdata/ledger-format.golden, which docs/ledger-format.md quotes
// verbatim, so that the document cannot drift from the code.
func TestLeafEncodingDocumented(t *testing.T) {
	l, v := ledgertest.New(t)
	var out strings.Builder
	var leaves [][]byte
	for _, e := range formatExample() {
		rc := mustAppend(t, l, e)
		raw, err := json.Marshal(&rc.Entry) // the canonical encoding
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(append([]byte{0x00}, raw...))
		leaves = append(leaves, h[:])
		fmt.Fprintf(&out, "entry %d leaf data (%d bytes):\n%s\n", rc.Entry.Index, len(raw), raw)
		fmt.Fprintf(&out, "entry %d leaf hash = SHA-256(0x00 || leaf data) = %x\n\n", rc.Entry.Index, h)
		// The ledger's own inclusion proof agrees with the hand-made leaf.
		if err := ledger.VerifyReceipt(rc, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	root := sha256.Sum256(append(append([]byte{0x01}, leaves[0]...), leaves[1]...))
	fmt.Fprintf(&out, "root of size 2 = SHA-256(0x01 || leaf hash 0 || leaf hash 1) = %x\n", root)
	fmt.Fprintf(&out, "checkpoint body root line (base64) = %s\n", base64.StdEncoding.EncodeToString(root[:]))

	text, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := ledger.ParseCheckpoint(text, v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cp.Root, root[:]) {
		t.Fatalf("the ledger's root %x is not the RFC 6962 root %x computed by hand", cp.Root, root)
	}

	got := out.String()
	want, err := os.ReadFile("testdata/ledger-format.golden")
	if err != nil || string(want) != got {
		t.Fatalf("testdata/ledger-format.golden (%v) differs; the encoding changed (every leaf hash with it) or the example did. Computed:\n%s", err, got)
	}
	doc, err := os.ReadFile("../../docs/ledger-format.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, want) {
		t.Fatalf("docs/ledger-format.md does not quote testdata/ledger-format.golden verbatim:\n%s", want)
	}
}
