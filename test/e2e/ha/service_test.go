package ha

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// roundRobin is a TCP proxy standing in for the Service: each connection
// goes to the next member, skipping one that refuses it.
type roundRobin struct {
	ln       net.Listener
	backends []string
	next     atomic.Int64
}

func newRoundRobin(t *testing.T, backends ...string) *roundRobin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rr := &roundRobin{ln: ln, backends: backends}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go rr.pipe(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return rr
}

func (rr *roundRobin) pipe(c net.Conn) {
	defer c.Close()
	var up net.Conn
	for range rr.backends {
		b := rr.backends[int(rr.next.Add(1))%len(rr.backends)]
		var err error
		if up, err = net.Dial("tcp", b); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
}

// Done when (in part): three replicas behind a round-robin Service, the
// API server calling the webhook through it while pods are created and
// 16 clients promote; the leader is SIGKILLed. No pod is admitted wrongly;
// a pod creation fails only when its webhook call was cut (in flight to
// the killed process), and those are counted.
// podLoad creates pods through the API server, half with a promoted
// image (must be admitted) and half with an unknown one (must be denied),
// and counts the answers.
type podLoad struct {
	admitted, denied, cut, wrong atomic.Int64
	wg                           sync.WaitGroup
}

// serviceEnv is the cluster behind a Service, with the API server calling
// its webhook, a namespace of stage dev and two images.
type serviceEnv struct {
	h                 *ha
	api               *framework.APIServer
	promoted, unknown string
	seq               atomic.Int64
}

func newServiceEnv(t *testing.T) *serviceEnv {
	h := newHA(t, 3, withSharedServingCert())
	var backends []string
	for _, sg := range h.nodes {
		backends = append(backends, sg.Addr)
	}
	svc := newRoundRobin(t, backends...)
	api := framework.StartAPIServer(t)
	hook := h.nodes[0].MustRun(t, "manifests", "--config", h.nodes[0].ConfigPath, "--url", "https://"+svc.ln.Addr().String(),
		"--ca-file", h.nodes[0].CAFile, "--webhook-only")
	hookFile := filepath.Join(t.TempDir(), "webhook.yaml")
	if err := os.WriteFile(hookFile, []byte(hook), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := api.Kubectl(t, "apply", "-f", hookFile); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, stderr)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-dev", Labels: map[string]string{"stagegate.dev/stage": "dev"}}}
	if _, err := api.Clientset.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	promoted, unknown := must(h.pushImage("app")), must(h.pushImage("app"))
	h.mustPromote(0, promoted)
	for i := range h.nodes {
		h.waitFor(h.ids[i]+" to apply the promotion", func() bool {
			r, err := h.admit(i, "dev", promoted)
			return err == nil && r.Allowed
		})
	}
	e := &serviceEnv{h: h, api: api, promoted: promoted, unknown: unknown}
	api.WaitForWebhook(t, func() error { return e.createPod(unknown, true) }, "stagegate denied")
	return e
}

func (e *serviceEnv) createPod(image string, dryRun bool) error {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-dev", Name: fmt.Sprintf("p-%d", e.seq.Add(1))},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err := e.api.Clientset.CoreV1().Pods("team-dev").Create(context.Background(), p, opts)
	return err
}

// startPods runs 4 pod creators until ctx ends.
func (e *serviceEnv) startPods(ctx context.Context) *podLoad {
	t := e.h.t
	l := &podLoad{}
	for w := range 4 {
		l.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				image, want := e.promoted, true
				if (i+w)%2 == 1 {
					image, want = e.unknown, false
				}
				err := e.createPod(image, false)
				switch {
				case err == nil && want:
					l.admitted.Add(1)
				case err == nil:
					l.wrong.Add(1)
					t.Errorf("admitted %s, which is not promoted", image)
				case strings.Contains(err.Error(), "failed calling webhook"):
					l.cut.Add(1) // the call was in flight to a replica that went away
				case !want && strings.Contains(err.Error(), "is not promoted to stage"):
					l.denied.Add(1)
				default:
					l.wrong.Add(1)
					t.Errorf("pod with %s: %v", image, err)
				}
			}
		})
	}
	return l
}

func (l *podLoad) String() string {
	return fmt.Sprintf("pods: %d admitted, %d denied as they should be, %d failed with their webhook call cut, %d wrong",
		l.admitted.Load(), l.denied.Load(), l.cut.Load(), l.wrong.Load())
}

func TestLeaderKillBehindAService(t *testing.T) {
	e := newServiceEnv(t)
	h := e.h
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	load := h.startLoad(ctx)
	pods := e.startPods(ctx)
	admitted, wrong := &pods.admitted, &pods.wrong
	h.waitFor("pods admitted", func() bool { return admitted.Load() >= 20 })
	lead := h.leader(0)
	before := load.count()
	beforePods := admitted.Load()
	load.down[lead].Store(true)
	h.nodes[lead].Kill()
	h.waitFor("promotions and pods after the kill", func() bool {
		return load.count() >= before+20 && admitted.Load() >= beforePods+20
	})
	stop()
	pods.wg.Wait()
	load.wg.Wait()
	t.Logf("%s; %d promotions acknowledged", pods, load.count())
	if wrong.Load() != 0 {
		t.Fatalf("%d pods were decided wrongly", wrong.Load())
	}
}

// Done when: restart all three replicas one after another (SIGTERM,
// drain) under the same load: zero failed pod creations, and every
// acknowledged promotion present on every replica.
func TestRollingRestartBehindAService(t *testing.T) {
	e := newServiceEnv(t)
	h := e.h
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	load := h.startLoad(ctx)
	pods := e.startPods(ctx)
	h.waitFor("pods admitted", func() bool { return pods.admitted.Load() >= 20 })
	for i, sg := range h.nodes {
		before, beforePods := load.count(), pods.admitted.Load()
		load.down[i].Store(true)
		sg.Restart() // SIGTERM, drained, started, ready
		load.down[i].Store(false)
		h.waitFor("promotions and pods after restarting "+h.ids[i], func() bool {
			return load.count() >= before+10 && pods.admitted.Load() >= beforePods+10
		})
	}
	stop()
	pods.wg.Wait()
	load.wg.Wait()
	t.Logf("%s; %d promotions acknowledged, %d retried", pods, load.count(), load.retries.Load())
	if pods.wrong.Load() != 0 || pods.cut.Load() != 0 {
		t.Fatalf("a rolling restart failed pod creations: %s", pods)
	}
	h.checkAcks(load)
}
