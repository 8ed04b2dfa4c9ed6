package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/testutil/golden"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const (
	digestA = "sha256:34960a034293450b706a123cba5d659276ac37a2ef8050b876459a52324662fa"
	digestB = "sha256:13b7be9fdd3f1d30a0290cf34489f4ed8ee7e24e7f6f894c4ccbd9f90241ab7c"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The answers the tables are made from, as the API writes them.
func sampleAnswers(t *testing.T) (receipt, status []byte) {
	at := time.Date(2026, 12, 2, 16, 33, 41, 0, time.UTC)
	receipt = mustJSON(t, ledger.Receipt{
		Entry: ledger.Entry{Index: 1, Kind: ledger.KindPromotion, Repository: "127.0.0.1:5001/sample/app", Digest: digestA,
			Stage: "test", Subject: "dev", Reason: "tests green", Time: at},
		Inclusion: ledger.InclusionProof{LeafIndex: 1, TreeSize: 2},
	})
	next, overridden := uint64(3), uint64(2)
	status = mustJSON(t, statusView{
		Key: "127.0.0.1:5001/sample/app",
		States: map[string][]ledger.State{
			// Out of pipeline order on purpose, with a stage the client's
			// default pipeline does not know.
			"test":   {{Digest: digestA, Stage: "test", Promoted: true, PromotedIndex: 1, PromotedAt: at, PromotedBy: "dev", Revoked: true, RevokedIndex: 2, RevokedAt: at.Add(time.Minute), RevokedBy: "sec", RevokeReason: "CVE-2026-0001"}},
			"dev":    {{Digest: digestA, Stage: "dev", Promoted: true, PromotedAt: at, PromotedBy: "dev"}, {Digest: digestB, Stage: "dev", Promoted: true, PromotedIndex: 3, PromotedAt: at, PromotedBy: "ci", Foreign: true}},
			"canary": {{Digest: digestB, Stage: "canary", Promoted: true, PromotedIndex: 4, PromotedAt: at, PromotedBy: "ci"}},
		},
		History: []ledger.Entry{
			{Index: 0, Kind: ledger.KindPromotion, Stage: "dev", Digest: digestA, Subject: "dev", Reason: "build 42", Time: at},
			{Index: 2, Kind: ledger.KindRevocation, Stage: "test", Digest: digestA, Subject: "sec", Reason: "CVE-2026-0001\nsee the advisory\tfor details " + strings.Repeat("x", 80), Time: at.Add(time.Minute)},
			{Index: 5, Kind: ledger.KindPromotion, Stage: "test", Digest: digestA, Subject: "sec", Reason: "false positive", Time: at.Add(time.Hour), OverridesRevocation: &overridden},
		},
		Next: &next,
	})
	return receipt, status
}

func TestPrintAnswer(t *testing.T) {
	receipt, status := sampleAnswers(t)
	stages := []string{"dev", "test", "stage", "prod"}
	tests := map[string]struct {
		output string
		raw    []byte
		golden string // the table's golden file, for table output
	}{
		"receipt as table":               {output: outputTable, raw: receipt, golden: "receipt.table"},
		"status as table":                {output: outputTable, raw: status, golden: "status.table"},
		"receipt as json":                {output: outputJSON, raw: receipt},
		"default off a terminal is json": {output: "", raw: status},
		"status as yaml":                 {output: outputYAML, raw: status},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			table := receiptTable(tt.raw)
			if bytes.Equal(tt.raw, status) {
				table = statusTable(tt.raw, stages)
			}
			if err := printAnswer(Streams{Out: &out}, tt.output, tt.raw, table); err != nil {
				t.Fatal(err)
			}
			switch tt.output {
			case outputTable:
				golden.Assert(t, filepath.Join("testdata", tt.golden), out.Bytes(), *update)
			case outputYAML:
				back, err := yaml.YAMLToJSON(out.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				var want, got any
				_ = json.Unmarshal(tt.raw, &want)
				_ = json.Unmarshal(back, &got)
				if !bytes.Equal(mustJSON(t, want), mustJSON(t, got)) {
					t.Errorf("yaml does not hold the answer:\n%s", out.Bytes())
				}
			default:
				if !bytes.Equal(out.Bytes(), tt.raw) {
					t.Errorf("printed %q, want the answer as it came", out.Bytes())
				}
			}
		})
	}
}

// -o FILE writes the answer there, byte for byte, and prints nothing: the
// receipt a pipeline keeps for `receipt verify`.
func TestPrintAnswerToFile(t *testing.T) {
	receipt, _ := sampleAnswers(t)
	file := filepath.Join(t.TempDir(), "receipt.json")
	var out bytes.Buffer
	if err := printAnswer(Streams{Out: &out}, file, receipt, receiptTable(receipt)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, receipt) || out.Len() != 0 {
		t.Fatalf("file holds %q and stdout %q; want the receipt in the file and nothing printed", got, out.Bytes())
	}
}
