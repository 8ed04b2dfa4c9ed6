package signing

import (
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/testutil/golden"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestNewStatement(t *testing.T) {
	pred := RevocationPredicate{Stage: "prod"}
	tests := []struct {
		name       string
		repository string
		digest     string
		predType   string
		predicate  any
		wantErr    error
	}{
		{name: "ok", repository: "registry.example/app", digest: testDigest, predType: RevocationPredicateType, predicate: pred},
		{name: "empty repository", digest: testDigest, predType: RevocationPredicateType, predicate: pred, wantErr: ErrInvalidStatement},
		{name: "empty predicate type", repository: "r", digest: testDigest, predicate: pred, wantErr: ErrInvalidStatement},
		{name: "predicate not an object", repository: "r", digest: testDigest, predType: RevocationPredicateType, predicate: []string{"x"}, wantErr: ErrInvalidStatement},
		{name: "no algorithm", repository: "r", digest: strings.TrimPrefix(testDigest, "sha256:"), predType: RevocationPredicateType, predicate: pred, wantErr: ErrInvalidDigest},
		{name: "sha512", repository: "r", digest: "sha512:" + strings.Repeat("ab", 64), predType: RevocationPredicateType, predicate: pred, wantErr: ErrInvalidDigest},
		{name: "short", repository: "r", digest: testDigest[:len(testDigest)-1], predType: RevocationPredicateType, predicate: pred, wantErr: ErrInvalidDigest},
		{name: "uppercase hex", repository: "r", digest: strings.ToUpper(testDigest[:8]) + testDigest[8:], predType: RevocationPredicateType, predicate: pred, wantErr: ErrInvalidDigest},
		{name: "tag not digest", repository: "r", digest: "latest", predType: RevocationPredicateType, predicate: pred, wantErr: ErrInvalidDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := NewStatement(tt.repository, tt.digest, tt.predType, tt.predicate)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if st.Type != StatementType || st.PredicateType != tt.predType {
				t.Errorf("type %q predicateType %q", st.Type, st.PredicateType)
			}
			if len(st.Subject) != 1 || st.Subject[0].Name != tt.repository ||
				"sha256:"+st.Subject[0].Digest["sha256"] != tt.digest {
				t.Errorf("subject = %+v", st.Subject)
			}
		})
	}
}

// TestStatementGolden pins the JSON of each predicate: it is the external
// contract read by cosign policies and by other stagegate instances.
func TestStatementGolden(t *testing.T) {
	at := time.Date(2025, 11, 26, 4, 30, 0, 0, time.UTC)
	req := Requester{Subject: "ci@example.com", Groups: []string{"release"}}
	tests := []struct {
		name      string
		predType  string
		predicate any
	}{
		{"promotion", PromotionPredicateType, PromotionPredicate{
			Stage: "prod", Repository: "registry.example/app",
			Platforms: []string{"sha256:" + strings.Repeat("1", 64)},
			Requester: req, Reason: "release 1.2", Evidence: map[string]any{"ticket": "CHG-1"},
			Time: at, LedgerIndex: 42, PolicyDigest: "sha256:" + strings.Repeat("2", 64),
			Labels: map[string]string{"org.opencontainers.image.version": "1.2.0"},
		}},
		// An index whose platforms have labels of their own; the
		// "promotion" file above pins that a predicate without them keeps
		// its bytes.
		{"promotion-index", PromotionPredicateType, PromotionPredicate{
			Stage: "prod", Repository: "registry.example/app",
			Platforms: []string{"sha256:" + strings.Repeat("1", 64), "sha256:" + strings.Repeat("3", 64)},
			Requester: req, Time: at, LedgerIndex: 45,
			Labels: map[string]string{"org.opencontainers.image.version": "1.2.0"},
			PlatformLabels: map[string]map[string]string{
				"sha256:" + strings.Repeat("1", 64): {"org.opencontainers.image.version": "1.2.0", "arch": "amd64"},
				"sha256:" + strings.Repeat("3", 64): {"org.opencontainers.image.version": "1.2.0", "arch": "arm64"},
			},
		}},
		{"revocation", RevocationPredicateType, RevocationPredicate{
			Stage: "*", Repository: "registry.example/app", Requester: req,
			Reason: "CVE-2025-0001", Time: at, LedgerIndex: 43,
		}},
		{"break-glass", BreakGlassPredicateType, BreakGlassPredicate{
			Stage: "prod", Workload: "payments/Deployment/api",
			Images: []string{"registry.example/app@" + testDigest}, Requester: req,
			Reason: "incident INC-7", Time: at, LedgerIndex: 44,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := NewStatement("registry.example/app", testDigest, tt.predType, tt.predicate)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden.Assert(t, filepath.Join("testdata", tt.name+".statement.json"), got, *update)
		})
	}
}
