package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/testutil/fuzzseed"
)

var writeCorpus = flag.Bool("write-corpus", false, "also write the fuzz seeds to testdata/fuzz/<FuzzName>/")

// TestMain bounds the minimization of new inputs (fuzzseed.MinimizeLimit).
func TestMain(m *testing.M) { os.Exit(fuzzseed.Main(m)) }

// fixtureObjects seeds a corpus from every workload manifest in testdata,
// each document of a multi-document one apart: the objects the webhook
// really receives. seed turns one object, as JSON, into a seed.
func fixtureObjects(f *testing.F, c *fuzzseed.Corpus, seed func(raw []byte) []any) {
	f.Helper()
	c.Files(filepath.Join("testdata", "*.yaml"), func(name string, body []byte) [][]any {
		var out [][]any
		for _, doc := range bytes.Split(body, []byte("\n---")) {
			raw, err := sigsyaml.YAMLToJSON(doc)
			if err != nil {
				f.Fatalf("%s: %v", name, err)
			}
			if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
				continue
			}
			out = append(out, seed(raw))
		}
		return out
	})
}

// FuzzReviewHTTP sends arbitrary bodies to the webhook handler. Whatever the
// body, the answer is HTTP 200 with a decodable AdmissionReview v1 carrying a
// response, and nothing is allowed that has images the ledger does not
// promote (the fake ledger is empty, so only image-less requests pass).
func FuzzReviewHTTP(f *testing.F) {
	c := fuzzseed.New(f, *writeCorpus)
	fixtureObjects(f, c, func(raw []byte) []any {
		req := requestFor(f, raw, admissionv1.Create, "")
		b, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: reviewAPIVersion, Kind: reviewKind}, Request: req,
		})
		if err != nil {
			f.Fatal(err)
		}
		return []any{b, "dev"}
	})
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[{"name":"a","image":"nginx"}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","uid":"y"}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"DELETE"}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[{"image":"a@sha256:AAAA"}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[{"image":"a","image":"b"}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":"a"}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"batch","version":"v1","kind":"CronJob"},"operation":"CREATE","object":{"spec":{"jobTemplate":null}}}}`,
	} {
		c.Add([]byte(s), "dev")
	}
	c.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}`), "../prod")

	f.Fuzz(func(t *testing.T, body []byte, stage string) {
		rev := NewReviewer(&fakeStates{}, &fakePolicy{}, WithStages([]string{"dev", "prod"}))
		h := &handler{reviewer: rev, opts: handlerOptions{maxBody: MaxBodyBytes, log: slog.New(slog.DiscardHandler)}}
		req := httptest.NewRequest(http.MethodPost, "/admission/validate/x", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.SetPathValue("stage", stage)
		rec := httptest.NewRecorder()
		h.serve(rec, req, func(ctx context.Context, stage string, req *admissionv1.AdmissionRequest, obj *workloadObject) *admissionv1.AdmissionResponse {
			return rev.review(ctx, stage, req, obj)
		}, true)
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
		if out.APIVersion != reviewAPIVersion || out.Kind != reviewKind || out.Response == nil {
			t.Fatalf("answer is not an AdmissionReview v1 with a response: %s", rec.Body.Bytes())
		}
		// The one-pass decode must answer exactly as the strict decode
		// followed by Review does.
		var in admissionv1.AdmissionReview
		if strict, err := kjson.UnmarshalStrict(body, &in, kjson.DisallowDuplicateFields); err == nil && len(strict) == 0 && checkReview(in.TypeMeta, in.Request) == nil {
			want := rev.Review(context.Background(), stage, in.Request)
			if want.Allowed != out.Response.Allowed || fmt.Sprint(want.Result) != fmt.Sprint(out.Response.Result) || fmt.Sprint(want.Warnings) != fmt.Sprint(out.Response.Warnings) {
				t.Fatalf("handler answered %+v, Review of the strict decode %+v, for %s", out.Response, want, body)
			}
		}
		if out.Response.Allowed {
			// Allowed only what the strict decode accepts, for a known
			// stage, with a UID, and with no image to check.
			var in admissionv1.AdmissionReview
			strict, err := kjson.UnmarshalStrict(body, &in, kjson.DisallowDuplicateFields)
			if err != nil || len(strict) > 0 || in.Request == nil || in.Request.UID == "" {
				t.Fatalf("allowed an undecodable review: %s", body)
			}
			if out.Response.UID != in.Request.UID {
				t.Fatalf("uid %q, want %q", out.Response.UID, in.Request.UID)
			}
			switch in.Request.Operation {
			case admissionv1.Delete, admissionv1.Connect:
				return
			}
			if w, err := extractWorkload(in.Request, nil); err != nil || len(w.Images) > 0 {
				t.Fatalf("allowed a workload with images %v (err %v) in stage %q although none is promoted", w.Images, err, stage)
			}
		} else if out.Response.Result == nil || out.Response.Result.Message == "" {
			t.Fatalf("denial without a message: %s", rec.Body.Bytes())
		}
	})
}

// FuzzWorkloadImages feeds arbitrary objects of every supported kind to the
// workload → images extraction and the image reference parser: they never
// panic, and every digest they accept is a lowercase sha256 digest.
func FuzzWorkloadImages(f *testing.F) {
	c := fuzzseed.New(f, *writeCorpus)
	fixtureObjects(f, c, func(raw []byte) []any {
		var head objectHead
		if err := json.Unmarshal(raw, &head); err != nil {
			f.Fatal(err)
		}
		return []any{head.APIVersion, head.Kind, raw, ""}
	})
	c.Add("v1", "Pod", []byte(`{"spec":{"containers":[{"image":"reg.example/app:1@sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}}`), "")
	c.Add("v1", "Pod", []byte(`{"spec":{"ephemeralContainers":[{"image":"APP@sha256:ABCD"}]}}`), "ephemeralcontainers")
	c.Add("v1", "Pod", []byte(`{"spec":{"containers":[{"image":"a"}],"Containers":[{"image":"b"}]}}`), "")
	c.Add("apps/v1", "Deployment", []byte(`{"spec":{"template":null}}`), "")
	c.Add("v1", "ReplicationController", []byte(`{"spec":{"template":{"spec":{"initContainers":[{"image":"x/../y:1"}]}}}}`), "")

	f.Fuzz(func(t *testing.T, apiVersion, kind string, raw []byte, sub string) {
		group, version := "", apiVersion
		if i := bytes.IndexByte([]byte(apiVersion), '/'); i >= 0 {
			group, version = apiVersion[:i], apiVersion[i+1:]
		}
		req := &admissionv1.AdmissionRequest{
			UID:         "fuzz",
			Kind:        metav1.GroupVersionKind{Group: group, Version: version, Kind: kind},
			Resource:    metav1.GroupVersionResource{Group: group, Version: version, Resource: "pods"},
			SubResource: sub,
			Operation:   admissionv1.Create,
			Object:      runtime.RawExtension{Raw: raw},
		}
		w, err := extractWorkload(req, nil)
		if err != nil {
			return
		}
		for _, c := range w.Images {
			ref, err := parseImage(c.Image)
			if err != nil {
				continue
			}
			if ref.Digest != "" && !registry.ValidDigest(ref.Digest) {
				t.Fatalf("parseImage(%q) accepted digest %q", c.Image, ref.Digest)
			}
			if ref.Digest == "" && ref.Tag == "" {
				t.Fatalf("parseImage(%q) has neither tag nor digest", c.Image)
			}
		}
	})
}
