package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

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
	// peer is the peer port's mux (wire), where the web view adds the
	// questions about its sessions.
	peer *http.ServeMux
	fwd  *forward.Forwarder
	svc  *promotion.Service
	// mark is how current the ledger is known to be (watch keeps it).
	mark *cluster.Watermark
	stop chan struct{}
	// diverged is set, for good, once this replica's ledger is found not
	// to be the leader's: it then fails closed until an operator acts.
	diverged atomic.Pointer[error]
	logV     note.Verifier
	log      *slog.Logger
	wg       sync.WaitGroup
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
	r.logV, r.log = a.Keys.LogVerifier, a.opts.logger
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
	size, err := fsm.Ledger().Size()
	var start string
	if err == nil {
		start, err = r.startMode(context.Background(), size)
	}
	if err != nil {
		fsm.Close()
		trans.Close()
		return nil, err
	}
	r.node, err = cluster.NewNode(cluster.Config{ID: cc.NodeID, Dir: cc.DataDir, Members: members, Start: start}, fsm, trans, cluster.WithLogger(logger))
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
func (r *replica) stale() error { return r.staleFast() }

// staleFast is stale for admission's hot path: it reads no ledger size
// (watch records it at every tick), so a replica that caught up counts as
// verified at the next tick, not at once.
func (r *replica) staleFast() error {
	if err := r.diverged.Load(); err != nil {
		return *err
	}
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
		if err != nil || st.Role != "leader" {
			continue
		}
		size, diverged, err := r.matches(st.Checkpoint)
		if diverged {
			r.log.Error("cluster: this replica's ledger is not the leader's; it fails closed", "leader", m.ID, "err", err)
			r.diverged.Store(&err)
			continue
		}
		if err != nil {
			r.log.Warn("cluster: checking the ledger against the leader's", "leader", m.ID, "err", err)
			continue
		}
		r.mark.Asked(now, size, r.size())
	}
}

// matches checks that this replica's ledger extends the leader's tree of
// checkpoint (same root at its size) once it is that large, and returns
// the checkpoint's size. A ledger that does not (an old single-node
// ledger, a copy of another) would otherwise count as caught up by its
// size alone while refusing every entry the leader sends.
func (r *replica) matches(checkpoint string) (size uint64, diverged bool, err error) {
	l := r.node.FSM().Ledger()
	own, err := l.Size()
	if err != nil {
		return 0, false, err
	}
	if checkpoint == "" {
		if own > 0 {
			return 0, true, fmt.Errorf("%w: this replica's ledger holds %d entries and the leader's none: they are not one ledger", cluster.ErrStale, own)
		}
		return 0, false, nil
	}
	cp, err := ledger.ParseCheckpoint(checkpoint, r.logV)
	if err != nil {
		return 0, true, fmt.Errorf("%w: the leader's checkpoint does not verify with this replica's log key: %w", cluster.ErrStale, err)
	}
	if own < cp.Size {
		return cp.Size, false, nil // catching up: checked once it is there
	}
	p, err := l.ConsistencyProof(cp.Size, own)
	if err != nil {
		return 0, false, err
	}
	if !bytes.Equal(p.FromRoot, cp.Root) {
		return 0, true, fmt.Errorf("%w: this replica's ledger differs from the leader's at size %d: they are not one ledger", cluster.ErrStale, cp.Size)
	}
	return cp.Size, false, nil
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
