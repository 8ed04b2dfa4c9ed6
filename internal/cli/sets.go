package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
)

// promoteSet asks for a promotion set (POST /v1/promotion-sets) and prints
// a line per member on stderr, as a single promotion does.
func promoteSet(ctx context.Context, s Streams, c *apiClient, images []string, stage, reason, evidence string, freezeOverride bool, output string) error {
	body := map[string]any{"images": images, "stage": stage, "reason": reason}
	if err := addPromoteOptions(body, reason, evidence, freezeOverride); err != nil {
		return err
	}
	status, out, err := c.do(ctx, http.MethodPost, "/v1/promotion-sets", body)
	if err != nil {
		if ae := (*apiError)(nil); errors.As(err, &ae) && ae.Status >= http.StatusInternalServerError {
			return fmt.Errorf("promotion set failed: %w", err)
		}
		return fmt.Errorf("promotion set refused, nothing recorded: %w", err)
	}
	var sr ledger.SetReceipt
	if err := json.Unmarshal(out, &sr); err != nil || len(sr.Receipts) != len(sr.Members) {
		return fmt.Errorf("unexpected answer: %s", out)
	}
	for _, rc := range sr.Receipts {
		e := rc.Entry
		verb := "already promoted"
		if status == http.StatusCreated && slices.Equal(e.Set, sr.Members) {
			verb = "promoted"
		}
		fmt.Fprintf(s.Err, "%s %s@%s to %s (ledger entry %d)\n", verb, e.Repository, e.Digest, e.Stage, e.Index)
	}
	fmt.Fprintf(s.Err, "promotion set of %d to %s: one receipt for all, at checkpoint size %d\n",
		len(sr.Members), sr.Stage, sr.Receipts[0].Inclusion.TreeSize)
	return printAnswer(s, output, out, setTable(sr))
}

// addPromoteOptions adds what promote and a promotion set share to the
// request body: the freeze override (which needs a reason) and evidence.
func addPromoteOptions(body map[string]any, reason, evidence string, freezeOverride bool) error {
	if freezeOverride {
		if strings.TrimSpace(reason) == "" {
			return errors.New("--freeze-override needs --reason: why the stage is promoted to during a freeze is recorded and signed")
		}
		body["freezeOverride"] = true
	}
	if evidence != "" {
		var ev map[string]any
		if err := json.Unmarshal([]byte(evidence), &ev); err != nil {
			return fmt.Errorf("--evidence must be a JSON object: %w", err)
		}
		body["evidence"] = ev
	}
	return nil
}

// setTable is a row per member of a set receipt.
func setTable(sr ledger.SetReceipt) func(io.Writer) error {
	return func(w io.Writer) error {
		fmt.Fprintln(w, "ENTRY\tKIND\tSTAGE\tREPOSITORY\tDIGEST\tBY\tTIME\tCHECKPOINT")
		for _, rc := range sr.Receipts {
			e := rc.Entry
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\tsize %d\n", e.Index, e.Kind, e.Stage, dash(e.Repository), shortDigest(e.Digest),
				e.Subject, when(e.Time), rc.Inclusion.TreeSize)
		}
		return nil
	}
}

// isSetReceipt tells a set receipt ({"receipts": [...]}) from a receipt.
func isSetReceipt(b []byte) bool {
	var probe struct {
		Receipts json.RawMessage `json:"receipts"`
	}
	return json.Unmarshal(b, &probe) == nil && len(probe.Receipts) > 0
}

// verifySetReceipt verifies a set receipt offline and prints a line per
// member.
func verifySetReceipt(s Streams, name string, b []byte, lv note.Verifier, check func(ledger.Entry) error) error {
	var sr ledger.SetReceipt
	if err := json.Unmarshal(b, &sr); err != nil {
		return fmt.Errorf("%s is not a set receipt: %w", name, err)
	}
	if err := ledger.VerifySetReceipt(sr, lv, check); err != nil {
		return fmt.Errorf("set receipt %s does not verify: %w", name, err)
	}
	size := sr.Receipts[0].Inclusion.TreeSize
	fmt.Fprintf(s.Out, "set receipt verified: %d promotions to stage %s, checkpoint of size %d signed by %s\n",
		len(sr.Members), sr.Stage, size, lv.Name())
	for _, m := range sr.Members {
		fmt.Fprintf(s.Out, "  %s@%s, ledger entry %d\n", m.Repository, m.Digest, m.LedgerIndex)
	}
	return nil
}

// setWords says which set an entry was recorded in: "set of 2: entries 5, 6".
func setWords(set []ledger.SetMember) string {
	idx := make([]string, len(set))
	for i, m := range set {
		idx[i] = fmt.Sprint(m.LedgerIndex)
	}
	return fmt.Sprintf("set of %d: entries %s", len(set), strings.Join(idx, ", "))
}
