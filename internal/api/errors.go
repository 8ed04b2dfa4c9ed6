package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/forward"
	"github.com/stagegate/stagegate/internal/inventory"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// This file is the one place where errors become HTTP answers. Handlers
// hand every error to fail (or answer, with a promotion's result), and
// respond maps what they return:
//
//   - the errors of the promotion use case, as internal/promotion
//     documents them (its own, and the registry's it passes on: one set,
//     internal/registry's, which internal/oci wraps too);
//   - the read errors of the ledger (out of range, not found, empty);
//   - inventory.ErrNotSynced, continuous validation's answers before its
//     inventory is whole;
//   - *requestError, a request this package refuses before asking anyone.
//
// Registry errors reach requesters as they are: internal/registry keeps
// every text a registry sent out of them (its transport strips error
// answers, for internal/oci's errors too), so that a registry, or whatever
// it redirects to, cannot have its answer echoed here.

// requestError is a request refused by this package itself.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

// refuse returns a *requestError.
func refuse(status int, format string, args ...any) error {
	return &requestError{status: status, msg: fmt.Sprintf(format, args...)}
}

// fail answers err.
func (a *API) fail(w http.ResponseWriter, err error) {
	a.answer(w, promotion.Result{}, err)
}

// answer answers a promotion or revocation.
func (a *API) answer(w http.ResponseWriter, res promotion.Result, err error) {
	status, body := a.respond(res, err)
	if status == http.StatusServiceUnavailable {
		// Nothing was recorded and a retry may succeed: a forwarding
		// follower retries at once (NotLeaderHeader), a client after a
		// second.
		w.Header().Set("Retry-After", "1")
		if errors.Is(err, cluster.ErrNotLeader) {
			w.Header().Set(forward.NotLeaderHeader, "1")
		}
	}
	writeJSON(w, status, body)
}

// respond is the status and body that answer res and err.
func (a *API) respond(res promotion.Result, err error) (int, any) {
	msg := func(m string) map[string]string { return map[string]string{"error": m} }
	if err == nil {
		if status, body, ok := pendingAnswer(res); ok {
			return status, body
		}
		var body any = res.Receipt
		if res.Replicas != nil {
			body = struct {
				ledger.Receipt
				Replicas *promotion.Replicas `json:"replicas"`
			}{res.Receipt, res.Replicas}
		}
		if res.Created {
			return http.StatusCreated, body
		}
		return http.StatusOK, body
	}
	var (
		req        *requestError
		pub        *promotion.PublishError
		denied     *promotion.DeniedError
		forbidden  *promotion.ForbiddenError
		revoked    *promotion.RevokedError
		closed     *promotion.ClosedError
		timeout    *registry.TimeoutError
		notAllowed *registry.HostNotAllowedError
	)
	switch {
	case errors.As(err, &req):
		return req.status, msg(req.msg)
	case errors.As(err, &pub):
		// Recorded but not published: the receipt is real, so hand it over
		// with the error.
		a.log.Warn("publishing to the registry failed", "index", pub.Index, "err", pub.Err)
		status := http.StatusBadGateway
		if isTimeout(pub.Err) {
			status = http.StatusGatewayTimeout
		}
		return status, map[string]any{"error": err.Error(), "receipt": res.Receipt}
	case errors.As(err, &forbidden):
		// The groups that may, so that the requester knows whom to ask.
		groups := forbidden.Groups
		if groups == nil {
			groups = []string{}
		}
		return http.StatusForbidden, map[string]any{"error": err.Error(), "allowedGroups": groups}
	case errors.As(err, &revoked):
		// Names the revocation, so that the pipeline's log says what
		// blocks it and whom to ask.
		groups := revoked.OverrideGroups
		if groups == nil {
			groups = []string{}
		}
		return http.StatusForbidden, map[string]any{"error": err.Error(), "overrideGroups": groups,
			"revocation": revocationView{Stage: revoked.Stage, Digest: revoked.Digest, LedgerIndex: revoked.Index,
				By: revoked.By, At: revoked.At.UTC(), Reason: revoked.Reason}}
	case errors.As(err, &closed):
		return http.StatusForbidden, closedAnswer(err, closed)
	case errors.As(err, &denied):
		return http.StatusForbidden, map[string]any{"error": err.Error(), "violations": denied.Violations}
	case errors.Is(err, promotion.ErrInvalid), errors.Is(err, registry.ErrInvalidReference), errors.Is(err, ledger.ErrOutOfRange):
		return http.StatusBadRequest, msg(err.Error())
	case errors.As(err, &notAllowed):
		// The registry's own words, whatever wrapped them: the pipeline
		// needs the host and the setting, not the call stack.
		return http.StatusForbidden, msg(notAllowed.Error())
	case errors.As(err, &timeout):
		// Answered before the server's write timeout would cut the
		// connection, which clients report as a TLS error.
		return http.StatusGatewayTimeout, msg(timeout.Error())
	case isTimeout(err):
		return http.StatusGatewayTimeout, msg("a registry did not answer in time")
	case errors.Is(err, cluster.ErrNotLeader):
		// Leadership moved while the write was under way.
		return http.StatusServiceUnavailable, msg("this replica is not the cluster leader (an election is under way); nothing was recorded by this request, retry it")
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrEmpty):
		return http.StatusNotFound, msg(err.Error())
	case errors.Is(err, promotion.ErrRequestNotFound):
		return http.StatusNotFound, msg(err.Error())
	case errors.Is(err, promotion.ErrNotPromoted), errors.Is(err, promotion.ErrNotPending):
		return http.StatusConflict, msg(err.Error())
	case errors.Is(err, inventory.ErrNotSynced):
		// Asked before the first evaluation of every namespace, or
		// after the watch ended: an answer would miss pods.
		return http.StatusServiceUnavailable, msg(err.Error() + "; ask again shortly")
	case errors.Is(err, registry.ErrUnreachable), errors.Is(err, registry.ErrUnauthorized):
		return http.StatusBadGateway, msg(err.Error())
	default:
		// The details may name files on disk; the log has them.
		a.log.Error("request failed", "err", err)
		return http.StatusInternalServerError, msg("internal error: the request was not recorded; see the server log")
	}
}

// revocationView is the revocation a 403 for a revoked digest names.
type revocationView struct {
	Stage       string    `json:"stage"`
	Digest      string    `json:"digest"`
	LedgerIndex uint64    `json:"ledgerIndex"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
	Reason      string    `json:"reason"`
}

// isTimeout reports whether err is a registry that did not answer in time.
func isTimeout(err error) bool {
	return errors.Is(err, registry.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// closedAnswer says when the stage opens again (nextOpen, RFC 3339; absent
// when no window opens it) and who may promote meanwhile.
func closedAnswer(err error, c *promotion.ClosedError) map[string]any {
	groups := c.OverrideGroups
	if groups == nil {
		groups = []string{}
	}
	body := map[string]any{"error": err.Error(), "stage": c.Stage, "overrideGroups": groups}
	if c.Window != "" {
		body["window"] = c.Window
	}
	if !c.NextOpen.IsZero() {
		body["nextOpen"] = c.NextOpen.UTC().Format(time.RFC3339)
	}
	return body
}
