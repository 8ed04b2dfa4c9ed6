package app

// The peer side of a replica: the public routes it adds (forwarded
// writes, GET /v1/cluster), what it serves other members on the peer port
// (status, break-glass records), the revocation wait and its metrics.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/forward"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
)

// wire makes the public mux of a replica around apiMux (the API's
// routes): writes go through the forwarder, which serves them here on
// the leader and sends them to the leader elsewhere; the peer port serves
// apiMux itself, for the writes other replicas forward.
func (r *replica) wire(apiMux *http.ServeMux, auth *api.Authenticator, logger *slog.Logger) *http.ServeMux {
	// A write the web view makes carries its session's identity in the
	// context (api.WithAuthenticated), not a bearer token.
	authn := func(req *http.Request) (policy.Identity, error) {
		if id, ok := api.Authenticated(req.Context()); ok {
			return id, nil
		}
		return auth.Authenticate(req)
	}
	r.fwd = forward.New(r.node, authn, r.client, forward.WithLogger(logger), forward.WithMaxBody(api.MaxBody))
	peer := http.NewServeMux()
	peer.HandleFunc("GET /peer/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, peerStatusAnswer{Status: r.node.Status(), Adopt: r.cfg.Adopt})
	})
	peer.HandleFunc("POST "+breakGlassPath, r.serveBreakGlass(r.svc))
	peer.Handle("/", apiMux)
	r.peer = peer
	r.servePeers(peer, logger)
	r.wg.Go(r.watch)
	pub := http.NewServeMux()
	for _, route := range []string{"POST /v1/promotions", "POST /v1/promotion-sets", "POST /v1/revocations",
		"POST /v1/requests/{id}/approvals", "POST /v1/requests/{id}/rejections"} {
		pub.Handle(route, r.fwd.Wrap(apiMux))
	}
	pub.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, req *http.Request) {
		if _, err := auth.Authenticate(req); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stagegate"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, r.members(req.Context()))
	})
	pub.Handle("/", apiMux)
	return pub
}

// MemberStatus is one member's line of GET /v1/cluster: its own Status,
// or why it did not answer.
type MemberStatus struct {
	cluster.Status
	Address  string `json:"address"`
	NonVoter bool   `json:"nonVoter,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ClusterStatus is GET /v1/cluster's answer.
type ClusterStatus struct {
	// Self is the member that answered.
	Self    string         `json:"self"`
	Members []MemberStatus `json:"members"`
}

// statusTimeout bounds each member's status query: an unreachable member
// is reported as such, not waited for.
const statusTimeout = 2 * time.Second

// members asks every member for its status, at once.
func (r *replica) members(ctx context.Context) ClusterStatus {
	out := ClusterStatus{Self: r.cfg.NodeID, Members: make([]MemberStatus, len(r.cfg.Members))}
	var wg sync.WaitGroup
	for i, m := range r.cfg.Members {
		out.Members[i] = MemberStatus{Status: cluster.Status{ID: m.ID}, Address: m.Address, NonVoter: m.NonVoter}
		if m.ID == r.cfg.NodeID {
			out.Members[i].Status = r.node.Status()
			continue
		}
		wg.Go(func() {
			st, err := r.peerStatus(ctx, m)
			if err != nil {
				out.Members[i].Role, out.Members[i].Error = "unreachable", err.Error()
				return
			}
			out.Members[i].Status = st
		})
	}
	wg.Wait()
	return out
}

// peerStatus asks member m for its Status over the peer port.
func (r *replica) peerStatus(ctx context.Context, m config.Member) (cluster.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := r.fwd.Call(ctx, r.cfg.NodeID, m.ID, m.Address, http.MethodGet, "/peer/v1/status", nil)
	if err != nil {
		return cluster.Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cluster.Status{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	var st cluster.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return cluster.Status{}, err
	}
	return st, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// revocationPoll is the pause between two rounds of asking the members
// whether they applied a revocation.
const revocationPoll = 50 * time.Millisecond

// WaitApplied waits until every member in contact holds the entry at
// index in its ledger, at most cluster.revocationWait, and says which do.
// A member that does not answer its status query is out of contact: it
// is pending, and not waited for (a partitioned replica fails closed by
// itself once stale). It is promotion.ReplicaWaiter.
func (r *replica) WaitApplied(ctx context.Context, index uint64) promotion.Replicas {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RevocationWait.Std())
	defer cancel()
	applied := map[string]bool{}
	unreachable := map[string]bool{}
	for {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, m := range r.cfg.Members {
			if applied[m.ID] {
				continue
			}
			if m.ID == r.cfg.NodeID {
				if n, err := r.node.FSM().Ledger().Size(); err == nil && n > index {
					applied[m.ID] = true
				}
				continue
			}
			wg.Go(func() {
				st, err := r.peerStatus(ctx, m)
				mu.Lock()
				defer mu.Unlock()
				unreachable[m.ID] = err != nil
				if err == nil && st.LedgerSize > index {
					applied[m.ID] = true
				}
			})
		}
		wg.Wait()
		waiting := false
		for _, m := range r.cfg.Members {
			waiting = waiting || !applied[m.ID] && !unreachable[m.ID]
		}
		if !waiting || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(revocationPoll):
		}
	}
	out := promotion.Replicas{Applied: []string{}, Pending: []string{}}
	for _, m := range r.cfg.Members {
		if applied[m.ID] {
			out.Applied = append(out.Applied, m.ID)
		} else {
			out.Pending = append(out.Pending, m.ID)
		}
	}
	return out
}

// breakGlassPath is where the leader's peer port records the break-glass
// admissions a follower's webhook decided.
const breakGlassPath = "/peer/v1/breakglass"

// breakGlassRecorder records break-glass admissions through the leader:
// on the leader it is the promotion service; a follower sends the record
// to the leader's peer port, retrying while there is none, until the
// review's own deadline. A follower's webhook decides as any other, only
// its record is the leader's to write.
type breakGlassRecorder struct {
	r   *replica
	svc *promotion.Service
}

func (b breakGlassRecorder) RecordBreakGlass(ctx context.Context, bg promotion.BreakGlass) (uint64, error) {
	body, err := json.Marshal(bg)
	if err != nil {
		return 0, fmt.Errorf("cluster: break-glass: %w", err)
	}
	for {
		if b.r.node.IsLeader() {
			return b.svc.RecordBreakGlass(ctx, bg)
		}
		if id, _ := b.r.node.Leader(); id != "" && id != b.r.cfg.NodeID {
			idx, retry, err := b.send(ctx, id, body)
			if !retry {
				return idx, err
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("cluster: break-glass: no cluster leader recorded it in time: %w", ctx.Err())
		case <-time.After(revocationPoll):
		}
	}
}

// send posts the record to member id; retry says the leader moved.
func (b breakGlassRecorder) send(ctx context.Context, id string, body []byte) (idx uint64, retry bool, err error) {
	var addr string
	for _, m := range b.r.cfg.Members {
		if m.ID == id {
			addr = m.Address
		}
	}
	resp, err := b.r.fwd.Call(ctx, b.r.cfg.NodeID, id, addr, http.MethodPost, breakGlassPath, body)
	if err != nil {
		return 0, true, nil // the leader died or moved: ask again
	}
	defer resp.Body.Close()
	var ans struct {
		Index uint64 `json:"index"`
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans)
	switch {
	case resp.StatusCode == http.StatusOK:
		return ans.Index, false, nil
	case resp.StatusCode == http.StatusServiceUnavailable:
		return 0, true, nil
	case resp.StatusCode == http.StatusBadRequest:
		return 0, false, fmt.Errorf("%w: %s", promotion.ErrInvalid, ans.Error)
	}
	return 0, false, fmt.Errorf("cluster: break-glass: the leader %s answered %d: %s", id, resp.StatusCode, ans.Error)
}

// serveBreakGlass is the leader's end of breakGlassRecorder.
func (r *replica) serveBreakGlass(svc *promotion.Service) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		var bg promotion.BreakGlass
		if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, api.MaxBody)).Decode(&bg); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "malformed break-glass record"})
			return
		}
		idx, err := svc.RecordBreakGlass(req.Context(), bg)
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, map[string]uint64{"index": idx})
		case errors.Is(err, cluster.ErrNotLeader):
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not the leader"})
		case errors.Is(err, promotion.ErrInvalid):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "not recorded; see the leader's log"})
		}
	}
}

// register exports the replica's state, read at each scrape.
func (r *replica) register(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(
		gauge("stagegate_cluster_leader", "1 while this replica is the Raft leader.", func() float64 { return b(r.node.IsLeader()) }),
		gauge("stagegate_cluster_stale", "1 while this replica is stale: not ready, and failing admission closed.", func() float64 { return b(r.stale() != nil) }),
		gauge("stagegate_cluster_ready", "1 while /readyz answers ready.", func() float64 { return b(r.ready() == nil) }),
		gauge("stagegate_cluster_term", "The Raft term this replica is in.", func() float64 { return float64(r.node.Raft().CurrentTerm()) }),
		gauge("stagegate_cluster_commit_index", "The Raft index this replica knows committed.", func() float64 { return float64(r.node.Raft().CommitIndex()) }),
		gauge("stagegate_cluster_applied_index", "The Raft index this replica's ledger applied.", func() float64 { return float64(r.node.Raft().AppliedIndex()) }),
		gauge("stagegate_cluster_last_contact_seconds", "Seconds since this follower last heard from a leader (0 on the leader).", func() float64 {
			if r.node.IsLeader() {
				return 0
			}
			if lc := r.node.Raft().LastContact(); !lc.IsZero() {
				return r.now().Sub(lc).Seconds()
			}
			return -1
		}),
	)
}
