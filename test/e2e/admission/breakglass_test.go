package admission

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/stagegate/stagegate/internal/ledger"
)

// Scenario 5: a revocation made with the CLI is honoured by the next
// admission.
func (s *suite) testRevocation(t *testing.T) {
	ns := s.namespace(t, "prod-revoked", "prod")
	ref := s.pushImage(t, "revoked")
	s.promote(t, ref, toProd...)
	wantAllowed(t, "before revocation", create(t, s.api.Clientset, pod(ns, "before", ref), false))

	const reason = "CVE-2099-0001 in libfoo"
	start := s.ledgerSize(t)
	if _, stderr, err := s.run(t, s.client("revoke", ref, "--stage", "prod", "--reason", reason, "-o", "/dev/null")...); err != nil {
		t.Fatalf("stagegate revoke: %v\n%s", err, stderr)
	}
	es := s.ledgerEntries(t, start)
	if len(es) != 1 || es[0].Kind != ledger.KindRevocation || es[0].Digest != digestOf(ref) || es[0].Stage != "prod" {
		t.Errorf("ledger after revoke = %+v, want one revocation of %s in prod", es, digestOf(ref))
	}

	wantDenied(t, "after revocation", create(t, s.api.Clientset, pod(ns, "after", ref), false),
		digestOf(ref), `was revoked from stage "prod"`, reason)
	// The revocation is of prod only: stage still admits the digest.
	stage := s.namespace(t, "stage-revoked", "stage")
	wantAllowed(t, "revoked from prod, still in stage", create(t, s.api.Clientset, pod(stage, "after", ref), false))
}

// warnings collects the warnings the API server sends a client.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

// clientWithWarnings is a clientset whose warnings land in the result.
func (s *suite) clientWithWarnings(t testing.TB) (kubernetes.Interface, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(s.api.Config)
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, w
}

func hasWarning(ws []string, parts ...string) bool {
	return slices.ContainsFunc(ws, func(w string) bool {
		for _, p := range parts {
			if !strings.Contains(w, p) {
				return false
			}
		}
		return true
	})
}

// Scenario 6: break-glass admits with a warning and a ledger entry where the
// stage allows it; a dry run records nothing; prod refuses it.
func (s *suite) testBreakGlass(t *testing.T, img images) {
	ns := s.namespace(t, "stage-breakglass", "stage")
	cs, warns := s.clientWithWarnings(t)
	const why = "INC-4711: hotfix while the pipeline is down"
	// emergency is an unpromoted pod asking for break-glass.
	emergency := func(ns, name string) *corev1.Pod {
		p := pod(ns, name, img.nowhere)
		p.Annotations = map[string]string{breakGlassAnnotation: why}
		return p
	}

	// Without the annotation the pod is refused: break-glass is what admits it.
	wantDenied(t, "no annotation", create(t, cs, pod(ns, "no-annotation", img.nowhere), false), notPromoted(img.nowhere, "stage")...)
	warns.take()

	start := s.ledgerSize(t)
	err := create(t, cs, emergency(ns, "hotfix"), false)
	wantAllowed(t, "break-glass in stage", err)
	if ws := warns.take(); !hasWarning(ws, "break-glass", digestOf(img.nowhere)) {
		t.Errorf("client warnings = %q, want one about break-glass naming the digest", ws)
	}
	es := s.ledgerEntries(t, start)
	if len(es) != 1 {
		t.Fatalf("ledger grew by %d entries, want 1 break-glass entry: %+v", len(es), es)
	}
	e := es[0]
	if e.Kind != ledger.KindBreakGlass || e.Stage != "stage" || e.Workload != ns+"/Pod/hotfix" || e.Reason != why ||
		!slices.Contains(e.Images, img.nowhere) || e.Subject == "" || len(e.Envelope) == 0 {
		t.Errorf("break-glass entry = %+v, want kind break-glass, stage, workload %s/Pod/hotfix, reason %q, image %s, a subject and an envelope",
			e, ns, why, img.nowhere)
	}

	t.Run("dry run records nothing", func(t *testing.T) {
		before := s.ledgerSize(t)
		err := create(t, cs, emergency(ns, "hotfix-dry"), true)
		wantAllowed(t, "dry-run break-glass (client-go)", err)
		if ws := warns.take(); !hasWarning(ws, "break-glass") {
			t.Errorf("dry-run warnings = %q, want the break-glass warning", ws)
		}

		f := filepath.Join(t.TempDir(), "hotfix.yaml")
		writeFile(t, f, manifest(t, emergency(ns, "hotfix-kubectl")), 0o644)
		_, stderr, err := s.api.Kubectl(t, "apply", "--dry-run=server", "-f", f)
		if err != nil {
			t.Errorf("kubectl apply --dry-run=server of a break-glass pod: %v\n%s", err, stderr)
		}
		if !strings.Contains(stderr, "Warning: break-glass") {
			t.Errorf("kubectl stderr = %q, want \"Warning: break-glass...\"", stderr)
		}
		if after := s.ledgerSize(t); after != before {
			t.Errorf("ledger size %d after dry runs, want %d (unchanged)", after, before)
		}
	})

	t.Run("prod refuses break-glass", func(t *testing.T) {
		prod := s.namespace(t, "prod-breakglass", "prod")
		before := s.ledgerSize(t)
		err := create(t, cs, emergency(prod, "hotfix"), false)
		wantDenied(t, "break-glass in prod", err, append(notPromoted(img.nowhere, "prod"), "break-glass annotation is not allowed")...)
		if after := s.ledgerSize(t); after != before {
			t.Errorf("ledger size %d after a refused break-glass, want %d", after, before)
		}
	})

	t.Run("kubectl shows the warning", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "hotfix.yaml")
		writeFile(t, f, manifest(t, emergency(ns, "hotfix-2")), 0o644)
		before := s.ledgerSize(t)
		_, stderr, err := s.api.Kubectl(t, "apply", "-f", f)
		if err != nil {
			t.Fatalf("kubectl apply of a break-glass pod: %v\n%s", err, stderr)
		}
		if !strings.Contains(stderr, "Warning: break-glass: admitted despite") || !strings.Contains(stderr, digestOf(img.nowhere)) {
			t.Errorf("kubectl stderr = %q, want the break-glass warning naming the digest", stderr)
		}
		if after := s.ledgerSize(t); after != before+1 {
			t.Errorf("ledger size %d, want %d (one break-glass entry)", after, before+1)
		}
	})
}
