package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
)

// Approver is the semi-automatic side of the promotion use case.
type Approver interface {
	Request(ctx context.Context, id uint64) (promotion.RequestView, error)
	Requests(ctx context.Context, stage, state string, start uint64, limit int) ([]promotion.RequestView, *uint64, error)
	Approve(ctx context.Context, a promotion.Answer) (promotion.Result, error)
	Reject(ctx context.Context, a promotion.Answer) (promotion.Result, error)
}

// WithApprovals serves the requests of stages with approvals:
// GET /v1/requests, GET /v1/requests/{id}, and POST
// /v1/requests/{id}/approvals and /rejections.
func WithApprovals(ap Approver) Option { return func(a *API) { a.approver = ap } }

func (a *API) registerRequests(mux *http.ServeMux) {
	if a.approver == nil {
		return
	}
	mux.HandleFunc("GET /v1/requests", a.authed(false, a.listRequests))
	mux.HandleFunc("GET /v1/requests/{id}", a.authed(false, a.getRequest))
	mux.HandleFunc("POST /v1/requests/{id}/approvals", a.authed(true, a.answerRequest(promotion.ActionApprove)))
	mux.HandleFunc("POST /v1/requests/{id}/rejections", a.authed(true, a.answerRequest(promotion.ActionReject)))
	for path, allow := range map[string]string{"/v1/requests": "GET", "/v1/requests/": "GET, POST"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			a.fail(w, refuse(http.StatusMethodNotAllowed, "method %s not allowed on %s; use %s", r.Method, r.URL.Path, allow))
		})
	}
}

func requestID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 63)
	if err != nil {
		return 0, refuse(http.StatusBadRequest, "request id must be a non-negative integer (the request's ledger index)")
	}
	return id, nil
}

func (a *API) listRequests(w http.ResponseWriter, r *http.Request) {
	start, limit, err := pageParams(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	q := r.URL.Query()
	list, next, err := a.approver.Requests(r.Context(), q.Get("stage"), q.Get("state"), start, limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	body := map[string]any{"requests": list}
	if next != nil {
		body["next"] = *next
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *API) getRequest(w http.ResponseWriter, r *http.Request) {
	id, err := requestID(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	v, err := a.approver.Request(r.Context(), id)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"request": v})
}

type answerBody struct {
	Reason string `json:"reason"`
}

// answerRequest approves or rejects: 201 with the request and the receipt
// of what was recorded (the promotion's, when the approval completed the
// request), or 200 with the request when nothing was (approving twice).
func (a *API) answerRequest(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := requestID(r)
		if err != nil {
			a.fail(w, err)
			return
		}
		var body answerBody
		if err := decode(r, &body); err != nil {
			a.fail(w, err)
			return
		}
		ans := promotion.Answer{ID: id, Reason: body.Reason, By: identity(r)}
		var res promotion.Result
		if action == promotion.ActionApprove {
			res, err = a.approver.Approve(r.Context(), ans)
		} else {
			res, err = a.approver.Reject(r.Context(), ans)
		}
		if err != nil {
			a.answer(w, res, err)
			return
		}
		out := map[string]any{"request": res.Request}
		status := http.StatusOK
		if res.Created {
			status = http.StatusCreated
			out["receipt"] = res.Receipt
		}
		writeJSON(w, status, out)
	}
}

// pendingAnswer is the 202 of a promotion that became (or found) a request.
func pendingAnswer(res promotion.Result) (int, any, bool) {
	if res.Request == nil || res.Receipt.Entry.Kind != ledger.KindRequest {
		return 0, nil, false
	}
	return http.StatusAccepted, map[string]any{"request": res.Request, "receipt": res.Receipt}, true
}
