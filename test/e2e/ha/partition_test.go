package ha

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stagegate/stagegate/internal/promotion"
)

// admit sends node i's webhook the AdmissionReview of a new pod running
// image in stage, as the API server does, and returns the answer.
func (h *ha) admit(i int, stage, image string) (*admissionv1.AdmissionResponse, error) {
	return h.admitWith(i, stage, image, nil)
}

// admitWith is admit with the pod's annotations.
func (h *ha) admitWith(i int, stage, image string, annotations map[string]string) (*admissionv1.AdmissionResponse, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	uid := types.UID(hex.EncodeToString(rnd[:]))
	raw, err := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "app-" + string(uid), "namespace": "team-a", "annotations": annotations},
		"spec":     map[string]any{"containers": []map[string]any{{"name": "app", "image": image}}},
	})
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: uid, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:     "app-" + string(uid), Namespace: "team-a", Operation: admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{Username: "deployer"}, Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		return nil, err
	}
	resp, err := h.clients[i].Post(h.nodes[i].URL+"/admission/validate/"+stage, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out admissionv1.AdmissionReview
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.Response == nil || out.Response.UID != uid {
		return nil, fmt.Errorf("admission answered %d: %s", resp.StatusCode, b)
	}
	return out.Response, nil
}

func (h *ha) mustAdmit(i int, image string, allowed bool, want ...string) {
	h.t.Helper()
	r, err := h.admit(i, "dev", image)
	if err != nil {
		h.t.Fatalf("%s: %v", h.ids[i], err)
	}
	msg := ""
	if r.Result != nil {
		msg = r.Result.Message
	}
	if r.Allowed != allowed {
		h.t.Fatalf("%s: admitted %s: %v (%s), want %v", h.ids[i], image, r.Allowed, msg, allowed)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			h.t.Fatalf("%s: answer %q lacks %q", h.ids[i], msg, w)
		}
	}
}

func (h *ha) mustPromote(i int, ref string) {
	h.t.Helper()
	code, b, err := h.do(context.Background(), i, http.MethodPost, "/v1/promotions", h.tokens[0],
		map[string]string{"image": ref, "stage": "dev", "reason": "ha test"})
	if err != nil || code != http.StatusCreated {
		h.t.Fatalf("%s: promote %s: %d %v %s", h.ids[i], ref, code, err, b)
	}
}

// readyz is node i's readiness answer.
func (h *ha) readyz(i int) (int, string) {
	resp, err := h.clients[i].Get(h.nodes[i].URL + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Done when: cut one replica off, revoke a digest through the majority:
// the cut-off replica never admits it, and catches up after the heal. A
// revocation answers once the replicas in contact applied it, and names
// the one that has not.
func TestPartitionedReplicaFailsClosed(t *testing.T) {
	h := newHA(t, 3, withProxies(), withStaleAfter("2s"))
	revoked, kept := must(h.pushImage("app")), must(h.pushImage("app"))
	h.mustPromote(1, revoked) // through a member, whichever leads
	h.mustPromote(2, kept)
	for i := range h.nodes {
		h.waitFor(h.ids[i]+" to apply both", func() bool {
			a, err1 := h.admit(i, "dev", revoked)
			b, err2 := h.admit(i, "dev", kept)
			return err1 == nil && err2 == nil && a.Allowed && b.Allowed
		})
	}

	// Cut a follower off: nobody reaches its peer port, so the leader
	// cannot replicate to it (its own requests, votes included, still
	// go out; the others refuse its pre-votes while they have a leader).
	lead := h.leader(0)
	cut := 2
	if lead == 2 {
		cut = 1
	}
	h.proxies[cut].setCut(true)
	h.waitFor(h.ids[cut]+" to report itself stale", func() bool {
		code, body := h.readyz(cut)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "lost contact with the cluster leader")
	})
	// Its metrics say so too.
	resp, err := h.clients[cut].Get(h.nodes[cut].URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"stagegate_cluster_stale 1", "stagegate_cluster_ready 0", "stagegate_cluster_leader 0"} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Fatalf("%s's metrics lack %q", h.ids[cut], want)
		}
	}
	// The leader's `cluster status` shows it unreachable.
	out, stderr, err := h.nodes[lead].Run(t, h.nodes[lead].ClientFlags("cluster", "status", "-o", "table")...)
	if err != nil {
		t.Fatalf("cluster status: %v\n%s", err, stderr)
	}
	for _, want := range []string{h.ids[lead] + " (*)  leader", h.ids[cut] + "      unreachable"} {
		if !strings.Contains(out, want) {
			t.Fatalf("cluster status lacks %q:\n%s", want, out)
		}
	}
	// Stale, it fails closed in the stage, naming why.
	h.mustAdmit(cut, kept, false, "lost contact with the cluster leader")

	// Revoke through the majority.
	other := 3 - lead - cut
	code, b, err := h.do(context.Background(), other, http.MethodPost, "/v1/revocations", h.tokens[0],
		map[string]string{"digest": digestOf(revoked), "stage": "dev", "reason": "CVE"})
	if err != nil || code != http.StatusCreated {
		t.Fatalf("revoke: %d %v %s", code, err, b)
	}
	var ans struct {
		Replicas promotion.Replicas `json:"replicas"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ans.Replicas.Applied)
	wantApplied := []string{h.ids[min(lead, other)], h.ids[max(lead, other)]}
	if !slices.Equal(ans.Replicas.Applied, wantApplied) || !slices.Equal(ans.Replicas.Pending, []string{h.ids[cut]}) {
		t.Fatalf("revocation's replicas %+v, want applied %v and pending [%s]", ans.Replicas, wantApplied, h.ids[cut])
	}
	h.mustAdmit(other, revoked, false, "revoked")
	h.mustAdmit(cut, revoked, false, "lost contact with the cluster leader")

	// Healed, it catches up: the revocation holds there too, and what is
	// promoted is admitted again.
	h.proxies[cut].setCut(false)
	h.waitFor(h.ids[cut]+" ready again", func() bool { code, _ := h.readyz(cut); return code == http.StatusOK })
	h.mustAdmit(cut, revoked, false, "revoked")
	h.mustAdmit(cut, kept, true)
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func digestOf(ref string) string { return ref[strings.LastIndexByte(ref, '@')+1:] }
