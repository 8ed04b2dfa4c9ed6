package admission

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
)

// breakGlass admits a denied workload whose break-glass the policy allows,
// once it is recorded. Nothing is admitted by break-glass without a record,
// except a dry run, which admits nothing.
func (r *Reviewer) breakGlass(ctx context.Context, stage string, req *admissionv1.AdmissionRequest, w workloadInfo, in policy.AdmissionInput,
	reasons string, warnings []string, log *slog.Logger) *admissionv1.AdmissionResponse {
	annotations := map[string]string{AuditBreakGlass: w.BreakGlass}
	if !in.DryRun {
		if r.recorder == nil {
			r.count(stage, ResultError)
			log.Error("break-glass refused: no recorder configured")
			return Errored(req.UID, fmt.Errorf("stagegate could not record the break-glass of %s in stage %q (no ledger recorder configured); refused: %s",
				w.ID(), stage, reasons))
		}
		bg := promotion.BreakGlass{
			Stage:         stage,
			Workload:      w.ID(),
			Justification: w.BreakGlass,
			User:          req.UserInfo.Username,
			Groups:        slices.Clone(req.UserInfo.Groups),
			Images:        breakGlassImages(in.Images),
		}
		idx, ok := r.glass.covered(bg)
		switch {
		case ok:
			log.Info("break-glass already recorded", "ledgerIndex", idx)
		case !r.glass.allow(bg):
			r.count(stage, ResultDenied)
			log.Warn("break-glass refused: too many records for this workload")
			return Denied(req.UID, http.StatusTooManyRequests, fmt.Sprintf(
				"stagegate refused the break-glass of %s in stage %q: it caused %d ledger records recently, and each new one (another justification, user or image) waits a minute; refused: %s",
				w.ID(), stage, breakGlassBurst, reasons))
		default:
			var err error
			if idx, err = r.recorder.RecordBreakGlass(ctx, bg); err != nil {
				r.count(stage, ResultError)
				log.Error("break-glass refused: recording failed", "err", err)
				return Errored(req.UID, fmt.Errorf("stagegate could not record the break-glass of %s in stage %q; refused: %s: %w",
					w.ID(), stage, reasons, err))
			}
			r.glass.remember(bg, idx)
		}
		annotations[AuditLedgerIndex] = strconv.FormatUint(idx, 10)
		log = log.With("ledgerIndex", idx)
	}
	r.count(stage, ResultBreakGlass)
	log.Warn("break-glass admission", "justification", w.BreakGlass, "reasons", reasons, "dryRun", in.DryRun)
	resp := Allowed(req.UID, append(warnings, "break-glass: admitted despite: "+reasons)...)
	resp.AuditAnnotations = annotations
	return resp
}

// breakGlassImages names each distinct image with its digest when known, so
// that the ledger records what actually ran.
func breakGlassImages(images []policy.ContainerImage) []string {
	var out []string
	for _, ci := range images {
		s := ci.Reference
		if !ci.Pinned && ci.Digest != "" {
			s += "@" + ci.Digest
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
