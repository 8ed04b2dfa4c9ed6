package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// This file maps the errors of the use case, the ledger and the registry
// to HTTP statuses and bodies.
//
// Registry errors reach requesters as they are: internal/registry keeps
// every text a registry sent out of them (its transport strips error
// answers, for internal/oci's errors too), so that a registry, or whatever
// it redirects to, cannot have its answer echoed here.

// result is the status and body that answer a promotion or revocation.
func (a *API) result(res promotion.Result, err error) (int, any) {
	var pub *promotion.PublishError
	if errors.As(err, &pub) {
		// Recorded but not published: the receipt is real, so hand it over
		// with the error.
		a.log.Warn("publishing to the registry failed", "index", pub.Index, "err", pub.Err)
		status := http.StatusBadGateway
		if isTimeout(pub.Err) {
			status = http.StatusGatewayTimeout
		}
		return status, map[string]any{"error": err.Error(), "receipt": res.Receipt}
	}
	if err != nil {
		return a.errorBody(err)
	}
	if res.Created {
		return http.StatusCreated, res.Receipt
	}
	return http.StatusOK, res.Receipt
}

func (a *API) writeUseCaseError(w http.ResponseWriter, err error) {
	status, body := a.errorBody(err)
	writeJSON(w, status, body)
}

func (a *API) errorBody(err error) (int, any) {
	var denied *promotion.DeniedError
	var timeout *registry.TimeoutError
	var notAllowed *registry.HostNotAllowedError
	msg := func(m string) map[string]string { return map[string]string{"error": m} }
	switch {
	case errors.As(err, &denied):
		return http.StatusForbidden, map[string]any{"error": err.Error(), "violations": denied.Violations}
	case errors.Is(err, promotion.ErrInvalid), errors.Is(err, registry.ErrInvalidReference), errors.Is(err, oci.ErrInvalidReference):
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
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, oci.ErrNotFound):
		return http.StatusNotFound, msg(err.Error())
	case errors.Is(err, promotion.ErrNotPromoted):
		return http.StatusConflict, msg(err.Error())
	case errors.Is(err, registry.ErrUnreachable), errors.Is(err, registry.ErrUnauthorized),
		errors.Is(err, oci.ErrRegistry), errors.Is(err, oci.ErrUnauthorized):
		return http.StatusBadGateway, msg(err.Error())
	default:
		// The details may name files on disk; the log has them.
		a.log.Error("request failed", "err", err)
		return http.StatusInternalServerError, msg("internal error: the request was not recorded; see the server log")
	}
}

// isTimeout reports whether err is a registry that did not answer in time.
func isTimeout(err error) bool {
	return errors.Is(err, registry.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}
