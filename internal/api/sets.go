package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/stagegate/stagegate/internal/promotion"
)

// SetPromoter is the promotion-set use case (promotion.Service has it).
type SetPromoter interface {
	PromoteSet(ctx context.Context, req promotion.SetRequest) (promotion.SetResult, error)
}

type promoteSetBody struct {
	Images   []string       `json:"images"`
	Stage    string         `json:"stage"`
	Reason   string         `json:"reason"`
	Evidence map[string]any `json:"evidence"`
	// FreezeOverride promotes while the stage is closed (an emergency).
	FreezeOverride bool `json:"freezeOverride"`
}

// promoteSet serves POST /v1/promotion-sets: several images to one stage,
// all or nothing, answered with one receipt proving every member.
func (a *API) promoteSet(w http.ResponseWriter, r *http.Request) {
	sp, ok := a.promoter.(SetPromoter)
	if !ok {
		a.fail(w, refuse(http.StatusNotImplemented, "this server does not record promotion sets"))
		return
	}
	var body promoteSetBody
	if err := decode(r, &body); err != nil {
		a.fail(w, err)
		return
	}
	res, err := sp.PromoteSet(r.Context(), promotion.SetRequest{
		Images: body.Images, Stage: body.Stage, Reason: body.Reason, Evidence: body.Evidence,
		Requester: identity(r), FreezeOverride: body.FreezeOverride,
	})
	var pub *promotion.PublishError
	switch {
	case err == nil && res.Created:
		writeJSON(w, http.StatusCreated, res.Receipt)
	case err == nil:
		writeJSON(w, http.StatusOK, res.Receipt)
	case errors.As(err, &pub) && len(res.Receipt.Receipts) > 0:
		// Recorded but not (all) published: the receipt is real, so hand
		// it over with the error, as a single promotion does.
		a.log.Warn("publishing a promotion set to the registry failed", "err", err)
		status := http.StatusBadGateway
		if isTimeout(pub.Err) {
			status = http.StatusGatewayTimeout
		}
		writeJSON(w, status, map[string]any{"error": err.Error(), "receipt": res.Receipt})
	default:
		a.fail(w, err)
	}
}
