package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stagegate/stagegate/internal/inventory"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
)

// Inventory is what runs in the cluster now, as continuous validation
// keeps it on every replica (*inventory.Controller, through internal/app).
type Inventory interface {
	// Running returns the running pods that run any of digests in stage
	// (any stage when empty), at most limit, and how many there are.
	Running(digests []string, stage string, limit int) ([]inventory.RunningPod, int, error)
	// Violations returns a page of the running pods that violate now.
	Violations(q inventory.ViolationQuery) ([]inventory.Violation, string, error)
	// Reaches is the digests a ledger entry is about: its own, its
	// platforms', and for a revocation those of the promotions it ends.
	Reaches(e ledger.Entry) []string
}

// WithInventory adds to the image status and the revocation answer where
// the digests run now, and serves GET /v1/violations.
func WithInventory(inv Inventory) Option { return func(a *API) { a.inventory = inv } }

// maxRunning bounds the running pods an answer lists; runningTotal counts
// them all.
const maxRunning = 1000

// Why an answer cannot say where a digest runs.
const (
	runningOff      = "continuous validation is off (continuousValidation.enabled), so stagegate does not know what runs"
	runningNotKnown = "the inventory of running pods is not synced with the cluster yet (or lost its watch); ask again"
)

// runningAnswer is where digests run now, in an image status and a
// revocation answer. RunningUnknown, when set, says why Running is not
// known; an empty Running is then no "runs nowhere".
type runningAnswer struct {
	Running        []runningPodView `json:"running"`
	RunningTotal   int              `json:"runningTotal"`
	RunningUnknown string           `json:"runningUnknown,omitempty"`
}

// runningPodView is a running pod in an answer, or a GitOps object
// (Kind says which) that deploys the digest.
type runningPodView struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Kind is "Pod", or the GitOps object's kind (OCIRepository,
	// Application).
	Kind string `json:"kind"`
	// Owner is the pod's controller as kind/name, e.g. ReplicaSet/app-5d8f.
	Owner      string   `json:"owner"`
	Stage      string   `json:"stage,omitempty"`
	Containers []string `json:"containers"`
}

// running is where digests run in stage ("" for any), bounded.
func (a *API) running(digests []string, stage string) runningAnswer {
	if a.inventory == nil {
		return runningAnswer{Running: []runningPodView{}, RunningUnknown: runningOff}
	}
	pods, total, err := a.inventory.Running(digests, stage, maxRunning)
	if err != nil {
		a.log.Warn("where digests run is not known", "err", err)
		return runningAnswer{Running: []runningPodView{}, RunningUnknown: runningNotKnown}
	}
	out := runningAnswer{Running: make([]runningPodView, 0, len(pods)), RunningTotal: total}
	for _, p := range pods {
		out.Running = append(out.Running, runningPodView{Namespace: p.Namespace, Name: p.Name, Kind: kindOr(p.Kind),
			Owner: p.Owner.Kind + "/" + p.Owner.Name, Stage: p.Stage, Containers: p.Containers})
	}
	return out
}

// imageRunning is where the digests of an image status run: the key's,
// when it is a digest, and those of the page's entries and their
// platforms.
func (a *API) imageRunning(key string, history []ledger.Entry) runningAnswer {
	var digests []string
	if strings.HasPrefix(key, "sha256:") {
		digests = append(digests, key)
	}
	for _, e := range history {
		if e.Digest != "" {
			digests = append(digests, e.Digest)
		}
		digests = append(digests, e.Platforms...)
	}
	slices.Sort(digests)
	return a.running(slices.Compact(digests), "")
}

// revocationAnswer is a revocation's receipt, its fields where they always
// were, so that a client that verifies receipts reads it as before, the
// running pods it affects, and in a cluster which replicas have applied it.
type revocationAnswer struct {
	ledger.Receipt
	runningAnswer
	Replicas *promotion.Replicas `json:"replicas,omitempty"`
}

// answerRevocation answers a revocation: with the pods it affects, the
// pods that run what it reaches in its stage (any, for "*"), when it was
// recorded.
func (a *API) answerRevocation(w http.ResponseWriter, res promotion.Result, err error) {
	if err != nil {
		a.answer(w, res, err)
		return
	}
	e := res.Receipt.Entry
	stage := e.Stage
	if stage == ledger.AllStages {
		stage = ""
	}
	digests := []string{e.Digest}
	if a.inventory != nil {
		digests = a.inventory.Reaches(e)
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, revocationAnswer{Receipt: res.Receipt, runningAnswer: a.running(digests, stage), Replicas: res.Replicas})
}

// Bounds of GET /v1/violations' parameters.
const (
	defaultViolationLimit = 100
	maxViolationLimit     = 1000
	// maxNameParam bounds a namespace or stage name: a DNS label or
	// subdomain is at most 253 bytes.
	maxNameParam = 253
)

// violationView is a violating pod in GET /v1/violations, or a GitOps
// object (Kind says which; Pod is then its name).
type violationView struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Kind      string `json:"kind"`
	Owner     string `json:"owner"`
	Stage     string `json:"stage"`
	Image     string `json:"image"`
	Digest    string `json:"digest,omitempty"`
	Reason    string `json:"reason"`
	Message   string `json:"message,omitempty"`
	// LedgerIndex is the ledger entry in force (the revocation), when
	// there is one.
	LedgerIndex *uint64   `json:"ledgerIndex,omitempty"`
	Since       time.Time `json:"since"`
}

// violationsPage is GET /v1/violations' answer; Next is the after of the
// next page, absent on the last.
type violationsPage struct {
	Violations []violationView `json:"violations"`
	Next       string          `json:"next,omitempty"`
}

// violations answers GET /v1/violations?stage=&namespace=&limit=&after=:
// a page of the running pods that admission would refuse now, by
// namespace and pod.
func (a *API) violations(w http.ResponseWriter, r *http.Request) {
	if a.inventory == nil {
		a.fail(w, refuse(http.StatusNotFound, "%s", runningOff))
		return
	}
	q := r.URL.Query()
	limit, err := uintParam(r, "limit", defaultViolationLimit)
	if err != nil {
		a.fail(w, err)
		return
	}
	if limit == 0 || limit > maxViolationLimit {
		a.fail(w, refuse(http.StatusBadRequest, "limit must be between 1 and %d", maxViolationLimit))
		return
	}
	vq := inventory.ViolationQuery{Stage: q.Get("stage"), Namespace: q.Get("namespace"), After: q.Get("after"), Limit: int(limit)}
	for name, v := range map[string]string{"stage": vq.Stage, "namespace": vq.Namespace} {
		if len(v) > maxNameParam {
			a.fail(w, refuse(http.StatusBadRequest, "%s is longer than %d bytes", name, maxNameParam))
			return
		}
	}
	// A GitOps object's key is namespace/Kind/name.
	if ns, pod, ok := strings.Cut(vq.After, "/"); vq.After != "" && (!ok || ns == "" || pod == "" || len(vq.After) > 3*maxNameParam+2) {
		a.fail(w, refuse(http.StatusBadRequest, "after must be the next of the page before (namespace/pod, or namespace/Kind/name)"))
		return
	}
	vs, next, err := a.inventory.Violations(vq)
	if err != nil {
		a.fail(w, err)
		return
	}
	page := violationsPage{Violations: make([]violationView, 0, len(vs)), Next: next}
	for _, v := range vs {
		vv := violationView{Namespace: v.Namespace, Pod: v.Pod, Kind: kindOr(v.Kind), Owner: v.Owner.Kind + "/" + v.Owner.Name, Stage: v.Stage,
			Image: v.Image, Digest: v.Digest, Reason: string(v.Reason), Message: v.Message, Since: v.Since.UTC()}
		if v.HasLedgerIndex {
			idx := v.LedgerIndex
			vv.LedgerIndex = &idx
		}
		page.Violations = append(page.Violations, vv)
	}
	writeJSON(w, http.StatusOK, page)
}

// kindOr is kind, or "Pod" when the inventory left it empty.
func kindOr(kind string) string {
	if kind == "" {
		return "Pod"
	}
	return kind
}
