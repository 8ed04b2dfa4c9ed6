package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/registry"
)

// HAResult is the HA section (issue 14): a single node and a
// three-replica cluster, real `serve` processes with fsync on, side by
// side in one run.
type HAResult struct {
	Replicas int `json:"replicas"`
	// Single and Cluster are promotions over HTTPS by the same closed-loop
	// clients: all to the single node, or round-robin over the replicas as
	// behind one Service (a follower forwards to the leader).
	Single  SoakWrites `json:"single"`
	Cluster SoakWrites `json:"cluster"`
	// Admission is the webhook at targetRate on the single node and on a
	// follower, the same bodies, allowed by promotions made through each:
	// each system's median round by p99, of AdmissionRounds (in order).
	Admission       []LoadRun `json:"admission"`
	AdmissionRounds []LoadRun `json:"admissionRounds"`
	// Failovers are the leader kills, in order.
	Failovers []FailoverRun `json:"failovers"`
	// CatchUp is a follower restarted on an empty disk, after the kills.
	CatchUp *CatchUpRun `json:"catchUp,omitempty"`
	// Bulk are empty-disk catch-ups in clusters formed on a bulk-loaded
	// ledger (the plan's HABulk sizes), each run after the rest.
	Bulk  []BulkCatchUp `json:"bulk,omitempty"`
	Notes []string      `json:"notes,omitempty"`
}

// FailoverRun is one SIGKILL of the leader.
type FailoverRun struct {
	Killed string `json:"killed"`
	// Seconds is from the SIGKILL to the first promotion answered 201 that
	// was sent after it, by clients retrying against the survivors.
	Seconds float64 `json:"seconds"`
	// Errors are the failed attempts meanwhile (no leader, forwarding to
	// the dead one): what a pipeline retries.
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"errorSamples,omitempty"`
	// RejoinSeconds is how long the killed replica took to be ready again
	// after its restart.
	RejoinSeconds float64 `json:"rejoinSeconds"`
}

// Goals of issue 14.
const (
	haThroughputGoal  = 0.5
	haFailoverGoal    = 3 * time.Second
	haFailoverBound   = time.Minute // stops a broken run, never judged
	haFailoverProbes  = 4           // clients retrying during a failover
	haReplicas        = 3
	haAdmissionRounds = 3
)

// haNode is one `serve` process of the section.
type haNode struct {
	id, base, cfgPath, log, dataDir string
	p                               *proc
}

// ha runs the HA section.
func (r *Runner) ha(ctx context.Context) error {
	dir, err := os.MkdirTemp(r.ws.dir, "ha-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	logs := filepath.Join(r.out, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	reg, err := registry.StartEmbedded("127.0.0.1:0", r.log)
	if err != nil {
		return err
	}
	defer reg.Close()
	t0 := time.Now()
	images, err := pushImages(ctx, reg.Host, r.plan.HAImages)
	if err != nil {
		return err
	}
	r.log.Info("pushed images", "count", len(images), "took", time.Since(t0).Round(time.Millisecond))

	token, cfg, err := r.haConfig(dir, reg.Host)
	if err != nil {
		return err
	}
	peers := filepath.Join(r.ws.dir, "peers")
	ids := make([]string, haReplicas)
	for i := range ids {
		ids[i] = fmt.Sprintf("sg-%d", i)
	}
	if !exists(filepath.Join(peers, ids[len(ids)-1], "tls.key")) {
		if err := r.ws.stagegate(ctx, "certs", "generate", "--peers", strings.Join(ids, ","), "--dir", peers, "--host", "127.0.0.1", "--force"); err != nil {
			return err
		}
	}

	// The single node, and the members of the cluster.
	single, err := r.haNode(dir, "single", cfg, nil)
	if err != nil {
		return err
	}
	cl := &config.Cluster{StaleAfter: config.Duration(10 * time.Second)}
	for _, id := range ids {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		cl.Members = append(cl.Members, config.Member{ID: id, Address: addr})
	}
	var nodes []*haNode
	for i, id := range ids {
		c := *cl
		c.NodeID, c.Listen = id, cl.Members[i].Address
		c.TLS = config.PeerTLS{CAFile: filepath.Join(peers, id, "ca.crt"), CertFile: filepath.Join(peers, id, "tls.crt"), KeyFile: filepath.Join(peers, id, "tls.key")}
		n, err := r.haNode(dir, id, cfg, &c)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	defer func() {
		single.p.stop()
		for _, n := range nodes {
			n.p.stop()
		}
	}()
	tlsCfg, err := clientTLS(filepath.Join(r.ws.certDir, "ca.crt"))
	if err != nil {
		return err
	}
	// All at once: no member is ready before a leader is elected.
	for _, n := range append([]*haNode{single}, nodes...) {
		if n.p, err = startProc(ctx, "stagegate-"+n.id, filepath.Join(logs, n.log), r.ws.bin, "serve", "--config", n.cfgPath, "--log-level", "warn"); err != nil {
			return err
		}
		n.p.health = n.base + "/readyz"
	}
	for _, n := range append([]*haNode{single}, nodes...) {
		if err := n.p.waitReady(ctx, tlsCfg, 2*time.Minute); err != nil {
			return err
		}
	}
	res := &HAResult{Replicas: haReplicas}
	r.res.HA = res
	client := newClient(tlsCfg)
	// Each throughput run gets its own share of the images, so that a fast
	// single node cannot leave the cluster's run without any; the rest is
	// for the admission, failover and rejoin steps.
	share := func(lo, hi float64) *soakWriter {
		n := float64(len(images))
		return &soakWriter{client: client, stage: cfg.StageNames()[0], images: images[int(lo*n):int(hi*n)]}
	}
	ws, wc, w := share(0, 0.425), share(0.425, 0.85), share(0.85, 1)

	// Two rounds each, in turn, so that a burst of other work on the
	// shared cores lands on both systems rather than on one.
	var bases []string
	for _, n := range nodes {
		bases = append(bases, n.base)
	}
	var latS, latC latencies
	var tookS, tookC time.Duration
	half := r.plan.PromoteDuration.Std() / 2
	for range 2 {
		tookS += ws.closedLoop(ctx, &latS, []string{single.base}, token, r.plan.PromoteClients, half)
		tookC += wc.closedLoop(ctx, &latC, bases, token, r.plan.PromoteClients, half)
	}
	res.Single, res.Cluster = latS.result(r.plan.PromoteClients, tookS), latC.result(r.plan.PromoteClients, tookC)
	r.log.Info("ha promotions", "system", "single", "per second", fmt.Sprintf("%.0f", res.Single.PerSecond), "errors", res.Single.Errors)
	r.log.Info("ha promotions", "system", "cluster", "per second", fmt.Sprintf("%.0f", res.Cluster.PerSecond), "errors", res.Cluster.Errors)
	for _, x := range []struct {
		name string
		w    *soakWriter
	}{{"single node", ws}, {"cluster", wc}} {
		if x.w.exhausted.Load() {
			res.Notes = append(res.Notes, fmt.Sprintf("the %s's run promoted all of its %d images before the end: its rate is over the time taken (raise the plan's HAImages)", x.name, len(x.w.images)))
		}
	}

	if err := r.haAdmission(ctx, w, single, nodes, token); err != nil {
		return err
	}
	for _, run := range res.Admission {
		r.log.Info("ha admission", "system", run.System, "rate", run.Rate, "p99", run.P99, "p99.9", run.P999, "errors", run.Errors)
	}

	for k := range r.plan.HAKills {
		if err := ctx.Err(); err != nil {
			return err
		}
		fo, err := r.failover(ctx, w, nodes, token, logs, k)
		if err != nil {
			return err
		}
		res.Failovers = append(res.Failovers, fo)
		r.log.Info("ha failover", "killed", fo.Killed, "seconds", fmt.Sprintf("%.2f", fo.Seconds), "errors", fo.Errors, "rejoin", fmt.Sprintf("%.1f", fo.RejoinSeconds))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cu, err := r.emptyDisk(ctx, w, nodes, token, logs, 5*time.Minute)
	if err != nil {
		return err
	}
	res.CatchUp = &cu
	r.log.Info("ha empty disk", "node", cu.Node, "entries", cu.Entries, "seconds", fmt.Sprintf("%.2f", cu.Seconds))
	var errs []error
	for _, n := range append([]*haNode{single}, nodes...) {
		if n.p.exited() {
			errs = append(errs, fmt.Errorf("bench: %s exited during the run; see logs/%s", n.id, n.log))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The bulk-loaded clusters run alone on the shared cores.
	for _, n := range append([]*haNode{single}, nodes...) {
		n.p.stop()
	}
	return r.haBulk(ctx, cfg, token, peers, ids, tlsCfg, logs)
}

// haAdmission attacks the single node's webhook and a follower's at
// targetRate, in turn, with the review bodies of three images promoted
// through each (on the cluster, through that follower, which forwards).
func (r *Runner) haAdmission(ctx context.Context, w *soakWriter, single *haNode, nodes []*haNode, token string) error {
	leader, err := haLeader(ctx, w.client, nodes, token)
	if err != nil {
		return err
	}
	follower := nodes[(leader+1)%len(nodes)]
	var refs []string
	for range 3 {
		img, ok := w.take()
		if !ok {
			return errors.New("bench: no images left for the admission run")
		}
		for _, n := range []*haNode{single, follower} {
			if _, err := w.promote(ctx, n.base, token, img); err != nil {
				return fmt.Errorf("bench: promotion on %s for the admission run: %w", n.id, err)
			}
		}
		refs = append(refs, img.repo+"@"+img.digest)
	}
	bodies, err := reviewBodiesFor(refs)
	if err != nil {
		return err
	}
	tlsCfg := w.client.Transport.(*http.Transport).TLSClientConfig
	var procs []*proc
	for _, n := range append([]*haNode{single}, nodes...) {
		procs = append(procs, n.p)
	}
	type system struct {
		name, target string
		n            *haNode
		c            *http.Client
		runs         []LoadRun
	}
	systems := []*system{{name: "single node", n: single}, {name: "follower " + follower.id, n: follower}}
	for _, sys := range systems {
		sys.target, sys.c = sys.n.base+"/admission/validate/"+w.stage, newClient(tlsCfg)
		// A follower applies the last promotions just after the leader
		// answered them: wait (bounded) until it allows the bodies.
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := sys.n.p.p.Poll(actx, func(ctx context.Context) error {
			for _, b := range bodies {
				if err := checkAnswer(ctx, tlsCfg, sys.target, b); err != nil {
					return err
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			return fmt.Errorf("bench: %s does not allow the promoted images: %w", sys.name, err)
		}
	}
	// Rounds in turn, and each system's median round: one burst of other
	// work on the shared cores decides a short run's p99 alone.
	for range haAdmissionRounds {
		for _, sys := range systems {
			if err := ctx.Err(); err != nil {
				return err
			}
			settle(ctx, procs, 30*time.Second)
			attack(sys.c, sys.target, bodies, min(targetRate, 500), r.plan.Warmup.Std())
			run := attack(sys.c, sys.target, bodies, targetRate, r.plan.RateDuration.Std())
			run.System = sys.name
			run.PeakRSS = sys.n.p.peakRSS()
			sys.runs = append(sys.runs, run)
			r.res.HA.AdmissionRounds = append(r.res.HA.AdmissionRounds, run)
		}
	}
	for _, sys := range systems {
		byP99 := slices.SortedFunc(slices.Values(sys.runs), func(a, b LoadRun) int { return cmp.Compare(a.P99, b.P99) })
		r.res.HA.Admission = append(r.res.HA.Admission, byP99[len(byP99)/2])
	}
	return nil
}

// haConfig is the config every node of the section shares: the bench's
// keys and serving certificate, a token of its own, the embedded registry,
// and a rate limit out of the way (the figure is the ledger's, not the
// per-identity bucket's).
func (r *Runner) haConfig(dir, regHost string) (string, *config.Config, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	token := hex.EncodeToString(b)
	tokens := filepath.Join(dir, "tokens.yaml")
	tf := api.TokenFile{Tokens: []api.Token{{SHA256: api.HashToken(token), Subject: "ha-bench", Groups: []string{"pipeline"}}}}
	if err := writeYAML(tokens, tf, 0o600); err != nil {
		return "", nil, err
	}
	cfg, err := r.ws.config(dir, "127.0.0.1:0", "")
	if err != nil {
		return "", nil, err
	}
	cfg.TokensFile = tokens
	cfg.Registries = append(cfg.Registries, config.Registry{Host: regHost, Insecure: true})
	cfg.RateLimit = config.RateLimit{PerSecond: 1e6, Burst: 1e6}
	return token, cfg, nil
}

// haNode writes node id's config (its own listen address and data
// directory, and cl when it is a cluster member) and returns it unstarted.
func (r *Runner) haNode(dir, id string, base *config.Config, cl *config.Cluster) (*haNode, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg := *base
	cfg.Listen = addr
	cfg.DataDir = filepath.Join(dir, id)
	cfg.Cluster = cl
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	n := &haNode{id: id, base: "https://" + addr, cfgPath: filepath.Join(dir, id+".yaml"), log: "ha-" + id + ".log", dataDir: cfg.DataDir}
	if err := writeYAML(n.cfgPath, &cfg, 0o600); err != nil {
		return nil, err
	}
	return n, nil
}

// closedLoop runs clients that each promote the next image as soon as the
// last one was answered, client c to bases[c % len], for d, into lat, and
// returns the time it took.
func (w *soakWriter) closedLoop(ctx context.Context, lat *latencies, bases []string, token string, clients int, d time.Duration) time.Duration {
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				img, ok := w.take()
				if !ok {
					return
				}
				lat.add(w.promote(ctx, bases[c%len(bases)], token, img))
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// take hands out the next unpromoted image.
func (w *soakWriter) take() (soakImage, bool) {
	i := int(w.next.Add(1)) - 1
	if i >= len(w.images) {
		w.exhausted.Store(true)
		return soakImage{}, false
	}
	return w.images[i], true
}

func (w *soakWriter) promote(ctx context.Context, base, token string, img soakImage) (time.Duration, error) {
	return post(ctx, w.client, base+"/v1/promotions", token, map[string]any{
		"image": img.repo + "@" + img.digest, "stage": w.stage, "reason": "ha bench"})
}

// haTargets are issue 14's goals next to the figures.
func haTargets(h *HAResult, add func(name, goal, value string, met *bool, note string)) {
	const (
		tput = "promotions per second, 3 replicas / single node"
		adm  = "admission p99 at 1000 rps, follower / single node"
		fo   = "failover: leader SIGKILL to the first acknowledged promotion"
		cu   = "catch-up of a replica restarted on an empty disk"
	)
	if h == nil {
		add(tput, "≥ 50%", "not measured", nil, "")
		add(adm, "≤ 1.1×", "not measured", nil, "")
		add(fo, "≤ 3 s", "not measured", nil, "")
		add(cu, "reported at 10^5 and 10^6 entries", "not measured", nil, "")
		haBulkTargets(nil, add)
		return
	}
	defer haBulkTargets(h, add)
	defer func() {
		c := h.CatchUp
		if c == nil {
			add(cu, "reported at 10^5 and 10^6 entries", "not measured", nil, "")
			return
		}
		add(cu, "reported at 10^5 and 10^6 entries", fmt.Sprintf("%.2f s to ready at %d entries (%d once ready)", c.Seconds, c.Entries, c.Rejoined), nil,
			fmt.Sprintf("measured at the %d entries this run wrote, after the kills; the bulk-loaded rows below give the issue's sizes", c.Entries))
	}()
	if h.Single.PerSecond > 0 {
		ratio := h.Cluster.PerSecond / h.Single.PerSecond
		add(tput, "≥ 50%", fmt.Sprintf("%.0f%% (%.0f/s vs %.0f/s, %d clients over HTTPS)", ratio*100, h.Cluster.PerSecond, h.Single.PerSecond, h.Cluster.Clients),
			ptr(ratio >= haThroughputGoal && h.Cluster.Errors == 0 && h.Single.Errors == 0),
			fmt.Sprintf("p99 %s vs %s; errors %d vs %d", fmtMs(h.Cluster.P99), fmtMs(h.Single.P99), h.Cluster.Errors, h.Single.Errors))
	} else {
		add(tput, "≥ 50%", "not measured", nil, "")
	}
	if len(h.Admission) == 2 && h.Admission[0].P99 > 0 {
		s, f := h.Admission[0], h.Admission[1]
		ratio := f.P99 / s.P99
		// An error in any round fails the goal, not only in the median one.
		errs := s.Errors + f.Errors
		var rounds []string
		for _, a := range h.AdmissionRounds {
			errs += a.Errors
			rounds = append(rounds, fmt.Sprintf("%s %s", a.System, fmtMs(a.P99)))
		}
		add(adm, "≤ 1.1×", fmt.Sprintf("%.2f× (%s vs %s, median rounds)", ratio, fmtMs(f.P99), fmtMs(s.P99)), ptr(ratio <= 1.1 && errs == 0),
			fmt.Sprintf("p99.9 %s vs %s; achieved %.0f vs %.0f rps; every round's p99: %s", fmtMs(f.P999), fmtMs(s.P999), f.Achieved, s.Achieved, strings.Join(rounds, ", ")))
	} else {
		add(adm, "≤ 1.1×", "not measured", nil, "")
	}
	if len(h.Failovers) == 0 {
		add(fo, "≤ 3 s", "not measured", nil, "")
		return
	}
	worst := 0.0
	var each []string
	for _, f := range h.Failovers {
		worst = max(worst, f.Seconds)
		each = append(each, fmt.Sprintf("%.2f s", f.Seconds))
	}
	add(fo, "≤ 3 s", fmt.Sprintf("%.2f s (worst of %d kills: %s)", worst, len(h.Failovers), strings.Join(each, ", ")),
		ptr(worst <= haFailoverGoal.Seconds()), "clients retry against the survivors every 20 ms after a failed attempt")
}
