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
func TestLeaderKillBehindAService(t *testing.T) {
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
	var seq atomic.Int64
	createPod := func(image string, dryRun bool) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-dev", Name: fmt.Sprintf("p-%d", seq.Add(1))},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
		opts := metav1.CreateOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err := api.Clientset.CoreV1().Pods("team-dev").Create(context.Background(), p, opts)
		return err
	}
	api.WaitForWebhook(t, func() error { return createPod(unknown, true) }, "stagegate denied")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	load := h.startLoad(ctx)
	var admitted, denied, cut, wrong atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				image, want := promoted, true
				if (i+w)%2 == 1 {
					image, want = unknown, false
				}
				err := createPod(image, false)
				switch {
				case err == nil && want:
					admitted.Add(1)
				case err == nil:
					wrong.Add(1)
					t.Errorf("admitted %s, which is not promoted", image)
				case strings.Contains(err.Error(), "failed calling webhook"):
					cut.Add(1) // the call was in flight to the killed replica
				case !want && strings.Contains(err.Error(), "is not promoted to stage"):
					denied.Add(1)
				default:
					wrong.Add(1)
					t.Errorf("pod with %s: %v", image, err)
				}
			}
		})
	}
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
	wg.Wait()
	load.wg.Wait()
	t.Logf("pods: %d admitted, %d denied as they should be, %d failed with their webhook call cut, %d wrong; %d promotions acknowledged",
		admitted.Load(), denied.Load(), cut.Load(), wrong.Load(), load.count())
	if wrong.Load() != 0 {
		t.Fatalf("%d pods were decided wrongly", wrong.Load())
	}
}
