package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/inventory"
	"github.com/stagegate/stagegate/internal/ledger"
)

// continuous is continuous validation as serve runs it: every replica runs
// the inventory.Controller, so that each answers where a digest runs, and
// the replica that holds the Lease leads it (writes the reports, gauges and
// Events, and evicts).
type continuous struct {
	client kubernetes.Interface
	cfg    config.ContinuousValidation
	log    *slog.Logger
	ledger viewer
	stages []string
	ctrl   *inventory.Controller
	// term is held by the running term: the elector starts a term's
	// callback on a goroutine of its own and does not wait for it, so
	// this keeps a term from overlapping the one before, and stop from
	// returning (and the ledger from closing) while one runs.
	term    sync.Mutex
	stopped bool
}

// viewer reads the ledger: *ledger.Ledger, or a replica's current one.
type viewer interface {
	View(fn func(ledger.Reader) error) error
}

// buildContinuous builds the Kubernetes clients and the Controller.
// reviewer must be a Reviewer for dry runs: no metrics, no recorder.
func buildContinuous(cfg *config.Config, l viewer, reviewer inventory.Reviewer, o options) (*continuous, error) {
	cv := cfg.ContinuousValidation
	rc, err := restConfig(cv.Kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("continuous validation: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("continuous validation: %w", err)
	}
	// A client of its own, and so a rate limiter of its own, for the
	// Events.
	events, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("continuous validation: %w", err)
	}
	c := &continuous{client: client, cfg: cv, log: o.logger, ledger: l, stages: cfg.StageNames()}
	opts := []inventory.Option{inventory.WithLogger(o.logger), inventory.WithSweepInterval(cv.Sweep.Std()),
		inventory.WithEviction(cfg.EvictStages(), cv.EvictRetry.Std()), inventory.WithEventClient(events)}
	if o.registerer != nil {
		opts = append(opts, inventory.WithRegisterer(o.registerer))
	}
	if c.ctrl, err = inventory.New(client, dyn, reviewer, opts...); err != nil {
		return nil, err
	}
	return c, nil
}

// restConfig reads the kubeconfig at path, or the pod's service account
// when path is empty.
func restConfig(path string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if path == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, fmt.Errorf("continuous validation: kubernetes client (continuousValidation.kubeconfig %q): %w", path, err)
	}
	rc.UserAgent = "stagegate"
	rc.QPS, rc.Burst = inventory.ClientQPS, inventory.ClientBurst
	return rc, nil
}

// start runs the Controller and the leader election until ctx ends; stop
// waits for both, and for the release of the Lease.
func (c *continuous) start(ctx context.Context) (stop func(), err error) {
	id, err := identity()
	if err != nil {
		return nil, err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: c.cfg.Lease.Name, Namespace: c.cfg.Lease.Namespace},
		Client:     c.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	lec := leaderelection.LeaderElectionConfig{
		Lock:          lock,
		Name:          c.cfg.Lease.Name,
		LeaseDuration: c.cfg.Lease.Duration.Std(),
		RenewDeadline: c.cfg.Lease.Renew.Std(),
		RetryPeriod:   c.cfg.Lease.Retry.Std(),
		// A replica that stops hands over at once, not after a lease
		// duration without reports.
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: c.lead,
			OnStoppedLeading: func() { c.log.Info("continuous validation: not leading", "identity", id) },
		},
	}
	if _, err := leaderelection.NewLeaderElector(lec); err != nil {
		return nil, fmt.Errorf("continuous validation: leader election: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.ctrl.Run(ctx); err != nil {
			c.log.Error("continuous validation stopped", "err", err)
		}
	})
	wg.Go(func() {
		// Run returns when this replica loses the Lease; it stands for
		// election again until ctx ends.
		for ctx.Err() == nil {
			le, err := leaderelection.NewLeaderElector(lec)
			if err != nil { // checked above
				c.log.Error("continuous validation: leader election", "err", err)
				return
			}
			le.Run(ctx)
		}
	})
	return func() {
		cancel()
		wg.Wait()
		c.term.Lock()
		defer c.term.Unlock()
		c.stopped = true
	}, nil
}

// lead leads the Controller for as long as ctx, the term, lasts.
func (c *continuous) lead(ctx context.Context) {
	c.term.Lock()
	defer c.term.Unlock()
	if c.stopped || ctx.Err() != nil {
		return
	}
	c.log.Info("continuous validation: leading", "lease", c.cfg.Lease.Namespace+"/"+c.cfg.Lease.Name)
	if err := c.ctrl.Lead(ctx); err != nil {
		c.log.Error("continuous validation: not leading this term", "err", err)
	}
}

// observe re-checks the pods that run e's digest, its platforms, and, for
// a revocation, the index or platforms it reaches through the promotion it
// ends: a pod may name any of them. Every replica keeps its inventory, so
// every one re-checks.
func (c *continuous) observe(e ledger.Entry) {
	c.ctrl.Invalidate(c.reaches(e)...)
}

// reaches is the digests a ledger entry is about: its own, its platforms',
// and for a revocation those of the promotions it ends.
func (c *continuous) reaches(e ledger.Entry) []string {
	digests := append([]string{e.Digest}, e.Platforms...)
	if e.Kind == ledger.KindRevocation {
		digests = append(digests, c.related(e.Digest)...)
	}
	slices.Sort(digests)
	return slices.Compact(digests)
}

// related is the digest and platforms of each promotion of digest.
func (c *continuous) related(digest string) []string {
	var out []string
	err := c.ledger.View(func(r ledger.Reader) error {
		for _, st := range c.stages {
			s, _, err := r.State(digest, st)
			if err != nil || !s.Promoted {
				continue
			}
			pe, err := r.Entry(s.PromotedIndex)
			if err != nil {
				return err
			}
			out = append(append(out, pe.Digest), pe.Platforms...)
		}
		return nil
	})
	if err != nil {
		// The sweep re-checks them in any case.
		c.log.Warn("continuous validation: promotions of a revoked digest", "digest", digest, "err", err)
	}
	return out
}

// identity names this replica in the Lease: its host name (the pod's
// name) and a random suffix, so that a restarted pod is a new holder.
func identity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("continuous validation: host name: %w", err)
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("continuous validation: %w", err)
	}
	return host + "_" + hex.EncodeToString(b), nil
}

// Running is where digests run now (api.Inventory).
func (c *continuous) Running(digests []string, stage string, limit int) ([]inventory.RunningPod, int, error) {
	return c.ctrl.Running(digests, stage, limit)
}

// Violations is a page of what violates now (api.Inventory).
func (c *continuous) Violations(q inventory.ViolationQuery) ([]inventory.Violation, string, error) {
	return c.ctrl.Violations(q)
}

// Reaches is the digests a ledger entry is about (api.Inventory).
func (c *continuous) Reaches(e ledger.Entry) []string { return c.reaches(e) }
