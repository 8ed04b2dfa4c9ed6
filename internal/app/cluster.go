package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/cluster"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/forward"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
)

// replica is this stagegate as a member of a Raft cluster (config
// cluster): the node, its peer port, and the forwarding of writes.
type replica struct {
	cfg     config.Cluster
	node    *cluster.Node
	mux     *forward.Mux
	client  *tls.Config
	ids     []string
	now     func() time.Time
	peerSrv *http.Server
	fwd     *forward.Forwarder
	svc     *promotion.Service
	// mark is how current the ledger is known to be (watch keeps it).
	mark *cluster.Watermark
	stop chan struct{}
	wg   sync.WaitGroup
}

// readLedger is what the readers (API, admission, revocation list,
// continuous validation) take of the ledger: *ledger.Ledger, or a
// replica's current one (liveLedger).
type readLedger interface {
	api.Ledger
	Entries(start, limit uint64) ([]ledger.Entry, error)
	View(fn func(ledger.Reader) error) error
}

// buildReplica starts this replica: the peer port, Raft on it, and the
// FSM over the ledger at cfg.LedgerPath(). The ledger is then the FSM's;
// the node owns and closes it.
func (a *App) buildReplica(cfg *config.Config) (*replica, error) {
	cc := *cfg.Cluster
	if cfg.RegistrySource.Enabled {
		return nil, errors.New("cluster: registrySource is not supported with cluster yet: its imports write to the ledger outside the replicated log")
	}
	server, client, err := loadPeerTLS(cc.TLS)
	if err != nil {
		return nil, err
	}
	r := &replica{cfg: cc, client: client, now: a.opts.now, stop: make(chan struct{})}
	if r.now == nil {
		r.now = time.Now
	}
	r.mark = cluster.NewWatermark(r.now())
	members := make([]cluster.Member, len(cc.Members))
	for i, m := range cc.Members {
		members[i] = cluster.Member{ID: m.ID, Address: m.Address, NonVoter: m.NonVoter}
		r.ids = append(r.ids, m.ID)
	}
	if r.mux, err = forward.Listen(cc.Listen, server, r.ids, cluster.RaftProto, forward.Proto); err != nil {
		return nil, fmt.Errorf("cluster.listen: %w", err)
	}
	trans, err := cluster.NewTransport(r.mux.Listener(cluster.RaftProto), peerAddr(cc.Self().Address), client, io.Discard)
	if err != nil {
		r.mux.Close()
		return nil, err
	}
	logger := a.opts.logger
	check := signing.CheckEntry(a.Keys.Verifier)
	open := func(path string) (*ledger.Ledger, error) {
		opts := []ledger.Option{ledger.WithSigner(a.Keys.LogSigner), ledger.WithStartupVerify(a.Keys.LogVerifier), ledger.WithLogger(logger)}
		if a.opts.noSync {
			opts = append(opts, ledger.WithNoSync())
		}
		return ledger.Open(path, opts...)
	}
	fsm, err := cluster.NewFSM(cfg.LedgerPath(), open, a.Keys.LogVerifier, check, logger)
	if err != nil {
		trans.Close()
		return nil, err
	}
	r.node, err = cluster.NewNode(cluster.Config{ID: cc.NodeID, Dir: cc.DataDir, Members: members}, fsm, trans, cluster.WithLogger(logger))
	if err != nil {
		fsm.Close()
		trans.Close()
		return nil, err
	}
	return r, nil
}

// servePeers serves the forwarded writes of followers with h (the API),
// trusting the identity they carry only on the peer port.
func (r *replica) servePeers(h http.Handler, logger *slog.Logger) {
	r.peerSrv = forward.NewServer(forward.Trusted(r.ids, api.WithAuthenticated, h), logger)
	r.wg.Go(func() { _ = r.peerSrv.Serve(r.mux.Listener(forward.Proto)) })
}

// close stops the peer server, then Raft (which closes the transport,
// the peer port and the ledger).
func (r *replica) close() error {
	close(r.stop)
	if r.node.IsLeader() {
		// A leader that stops hands over first, so that writes wait for
		// one transfer rather than an election timeout. Best effort: a
		// lone node or a failed transfer shuts down all the same.
		_ = r.node.Raft().LeadershipTransfer().Error()
	}
	var err error
	if r.peerSrv != nil {
		err = r.peerSrv.Close()
	}
	err = errors.Join(err, r.node.Shutdown(), r.mux.Close())
	r.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ready is the replica's readiness: a leader known, its ledger as large
// as the leader's was when last asked, and not stale.
func (r *replica) ready() error {
	if err := r.stale(); err != nil {
		return err
	}
	if id, _ := r.node.Leader(); id == "" {
		return errors.New("no cluster leader is known (an election is under way)")
	}
	if c, ok := r.mark.CatchingUp(); ok {
		return fmt.Errorf("catching up: the ledger holds %d of the leader's %d entries", r.size(), c)
	}
	return nil
}

// stale is the replica's staleness (see cluster.Watermark).
func (r *replica) stale() error {
	if r.node.IsLeader() {
		r.mark.Leader(r.now())
	} else {
		r.mark.Applied(r.size())
	}
	return r.mark.Stale(r.now(), r.cfg.StaleAfter.Std())
}

// staleFast is stale for admission's hot path: it reads no ledger size
// (watch records it at every tick), so a replica that caught up counts as
// verified at the next tick, not at once.
func (r *replica) staleFast() error {
	if r.node.IsLeader() {
		r.mark.Leader(r.now())
	}
	return r.mark.Stale(r.now(), r.cfg.StaleAfter.Std())
}

// size is the number of entries of this replica's ledger (0 if it cannot
// be read: not current).
func (r *replica) size() uint64 {
	n, _ := r.node.FSM().Ledger().Size()
	return n
}

// watch asks the leader for its ledger size every fifth of staleAfter,
// so that the watermark advances while this replica keeps up.
func (r *replica) watch() {
	every := max(r.cfg.StaleAfter.Std()/5, 100*time.Millisecond)
	for {
		r.observe()
		select {
		case <-r.stop:
			return
		case <-time.After(every):
		}
	}
}

func (r *replica) observe() {
	now := r.now()
	if r.node.IsLeader() {
		r.mark.Leader(now)
		return
	}
	id, _ := r.node.Leader()
	for _, m := range r.cfg.Members {
		if m.ID != id || id == r.cfg.NodeID {
			continue
		}
		st, err := r.peerStatus(context.Background(), m)
		if err == nil && st.Role == "leader" {
			r.mark.Asked(now, st.LedgerSize, r.size())
		}
	}
}

// loadPeerTLS reads the peer certificate, which both ends of every peer
// connection present, and the members' CA.
func loadPeerTLS(t config.PeerTLS) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster.tls: %w", err)
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster.tls.caFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("cluster.tls.caFile %s: no PEM certificate", t.CAFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, MinVersion: tls.VersionTLS13},
		&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}

// peerAddr is a member's address as Raft advertises it.
type peerAddr string

func (p peerAddr) Network() string { return "tcp" }
func (p peerAddr) String() string  { return string(p) }

// liveLedger reads the FSM's ledger of the moment: a snapshot install
// replaces it, so it is taken again for every call.
type liveLedger struct{ fsm *cluster.FSM }

func (l liveLedger) HistoryPage(key string, start uint64, limit, maxBytes int) ([]ledger.Entry, bool, error) {
	return l.fsm.Ledger().HistoryPage(key, start, limit, maxBytes)
}
func (l liveLedger) State(digest, stage string) (ledger.State, bool, error) {
	return l.fsm.Ledger().State(digest, stage)
}
func (l liveLedger) EntriesPage(start, limit uint64, maxBytes int) ([]ledger.Entry, error) {
	return l.fsm.Ledger().EntriesPage(start, limit, maxBytes)
}
func (l liveLedger) Entries(start, limit uint64) ([]ledger.Entry, error) {
	return l.fsm.Ledger().Entries(start, limit)
}
func (l liveLedger) Size() (uint64, error)                   { return l.fsm.Ledger().Size() }
func (l liveLedger) Checkpoint() (string, error)             { return l.fsm.Ledger().Checkpoint() }
func (l liveLedger) View(fn func(ledger.Reader) error) error { return l.fsm.Ledger().View(fn) }
func (l liveLedger) InclusionProof(index, size uint64) (ledger.InclusionProof, error) {
	return l.fsm.Ledger().InclusionProof(index, size)
}
func (l liveLedger) ConsistencyProof(from, to uint64) (ledger.ConsistencyProof, error) {
	return l.fsm.Ledger().ConsistencyProof(from, to)
}

// freshStates fails every state read of admission while the replica is
// stale, so that a partitioned minority never admits what a revocation
// committed elsewhere withdrew: the review fails closed with the reason.
type freshStates struct {
	r      *replica
	states readLedger
}

func (f freshStates) State(digest, stage string) (ledger.State, bool, error) {
	if err := f.r.staleFast(); err != nil {
		return ledger.State{Digest: digest, Stage: stage}, false, err
	}
	return f.states.State(digest, stage)
}

// wire makes the public mux of a replica around apiMux (the API's
// routes): writes go through the forwarder, which serves them here on
// the leader and sends them to the leader elsewhere; the peer port serves
// apiMux itself, for the writes other replicas forward.
func (r *replica) wire(apiMux *http.ServeMux, auth *api.Authenticator, logger *slog.Logger) *http.ServeMux {
	r.fwd = forward.New(r.node, auth.Authenticate, r.client, forward.WithLogger(logger), forward.WithMaxBody(api.MaxBody))
	peer := http.NewServeMux()
	peer.HandleFunc("GET /peer/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, r.node.Status())
	})
	peer.HandleFunc("POST "+breakGlassPath, r.serveBreakGlass(r.svc))
	peer.Handle("/", apiMux)
	r.servePeers(peer, logger)
	r.wg.Go(r.watch)
	pub := http.NewServeMux()
	for _, route := range []string{"POST /v1/promotions", "POST /v1/revocations"} {
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
