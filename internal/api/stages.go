package api

import (
	"context"
	"net/http"

	"github.com/stagegate/stagegate/internal/promotion"
)

// StageLister shows the stages and whether their windows are open.
type StageLister interface {
	Stages(ctx context.Context) []promotion.StageView
}

// WithStages serves GET /v1/stages.
func WithStages(sl StageLister) Option { return func(a *API) { a.stageLister = sl } }

func (a *API) registerStages(mux *http.ServeMux) {
	if a.stageLister == nil {
		return
	}
	mux.HandleFunc("GET /v1/stages", a.authed(false, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"stages": a.stageLister.Stages(r.Context())})
	}))
	mux.HandleFunc("/v1/stages", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET")
		a.fail(w, refuse(http.StatusMethodNotAllowed, "method %s not allowed on /v1/stages; use GET", r.Method))
	})
}
