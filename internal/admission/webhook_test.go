package admission

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func reviewBody(t *testing.T, apiVersion string, req *admissionv1.AdmissionRequest) []byte {
	t.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandler(t *testing.T) {
	good := podRequest(t, nil, imgA)
	good.UID = "good-uid"
	bad := podRequest(t, nil, imgB)
	bad.UID = "bad-uid"
	tests := map[string]struct {
		path        string
		contentType string
		body        []byte
		policy      Policy
		wantAllowed bool
		wantUID     string
		wantCode    int32
		wantMsg     string
	}{
		"allowed review echoes the uid": {
			body: reviewBody(t, "admission.k8s.io/v1", good), wantAllowed: true, wantUID: "good-uid",
		},
		"content type with charset is accepted": {
			contentType: "application/json; charset=utf-8",
			body:        reviewBody(t, "admission.k8s.io/v1", good), wantAllowed: true, wantUID: "good-uid",
		},
		"denied review": {
			body: reviewBody(t, "admission.k8s.io/v1", bad), wantUID: "bad-uid", wantCode: http.StatusForbidden, wantMsg: "not promoted",
		},
		"mislabelled route refuses a workload": {
			path: "/admission/unknown-stage", body: reviewBody(t, "admission.k8s.io/v1", good), wantUID: "good-uid",
			wantCode: http.StatusForbidden, wantMsg: "known stages: dev, prod",
		},
		"mutating route never refuses": {
			path: "/admission/mutate/prod", body: reviewBody(t, "admission.k8s.io/v1", bad), wantUID: "bad-uid", wantAllowed: true,
		},
		"mutating route still answers a bad review": {
			path: "/admission/mutate/prod", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
			wantCode: http.StatusBadRequest, wantMsg: "no request",
		},
		"unknown stage in the url": {
			path: "/admission/validate/qa", body: reviewBody(t, "admission.k8s.io/v1", good), wantUID: "good-uid",
			wantCode: http.StatusForbidden, wantMsg: `unknown stage "qa"`,
		},
		"wrong content type": {
			contentType: "application/yaml", body: reviewBody(t, "admission.k8s.io/v1", good),
			wantCode: http.StatusUnsupportedMediaType, wantMsg: "want application/json",
		},
		"oversized body": {
			body:     append(reviewBody(t, "admission.k8s.io/v1", good), bytes.Repeat([]byte(" "), 4096)...),
			wantCode: http.StatusRequestEntityTooLarge, wantMsg: "larger than",
		},
		"garbage json": {
			body: []byte(`{"apiVersion": "admission.k8s.io/v1", "kind": `), wantCode: http.StatusBadRequest, wantMsg: "bad AdmissionReview",
		},
		"v1beta1 is refused but the uid is echoed": {
			body: reviewBody(t, "admission.k8s.io/v1beta1", good), wantUID: "good-uid", wantCode: http.StatusBadRequest, wantMsg: "admissionReviewVersions",
		},
		"review without a request": {
			body: reviewBody(t, "admission.k8s.io/v1", nil), wantCode: http.StatusBadRequest, wantMsg: "no request",
		},
		"panic in the policy is a denial": {
			body: reviewBody(t, "admission.k8s.io/v1", good), policy: panicPolicy{}, wantUID: "good-uid",
			wantCode: http.StatusInternalServerError, wantMsg: "internal error",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pol := tc.policy
			if pol == nil {
				pol = &fakePolicy{}
			}
			rev := NewReviewer(testStates(), pol, WithStages([]string{"dev", "prod"}))
			srv := httptest.NewServer(NewHandler(rev, WithMaxBodyBytes(int64(len(reviewBody(t, "admission.k8s.io/v1", good))+100))))
			defer srv.Close()
			path, ct := tc.path, tc.contentType
			if path == "" {
				path = "/admission/validate/prod"
			}
			if ct == "" {
				ct = "application/json"
			}
			resp, err := http.Post(srv.URL+path, ct, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP status = %d, want 200", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil || out.Request != nil {
				t.Fatalf("answer = %+v", out)
			}
			r := out.Response
			if string(r.UID) != tc.wantUID {
				t.Errorf("UID = %q, want %q", r.UID, tc.wantUID)
			}
			if r.Allowed != tc.wantAllowed {
				t.Fatalf("Allowed = %v, want %v (%+v)", r.Allowed, tc.wantAllowed, r.Result)
			}
			if !tc.wantAllowed && (r.Result == nil || r.Result.Code != tc.wantCode || !strings.Contains(r.Result.Message, tc.wantMsg)) {
				t.Errorf("result = %+v, want code %d and message containing %q", r.Result, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestHandlerRoutes(t *testing.T) {
	srv := httptest.NewServer(NewHandler(NewReviewer(testStates(), &fakePolicy{})))
	defer srv.Close()
	tests := map[string]struct {
		method, path string
		want         int
	}{
		"get is not a review":     {http.MethodGet, "/admission/validate/prod", http.StatusMethodNotAllowed},
		"no stage":                {http.MethodPost, "/admission/validate/", http.StatusNotFound},
		"other path":              {http.MethodPost, "/v1/promotions", http.StatusNotFound},
		"post to a stage answers": {http.MethodPost, "/admission/validate/prod", http.StatusOK},
		"unknown-stage answers":   {http.MethodPost, "/admission/unknown-stage", http.StatusOK},
		"mutate answers":          {http.MethodPost, "/admission/mutate/prod", http.StatusOK},
		"mutate needs a stage":    {http.MethodPost, "/admission/mutate/", http.StatusNotFound},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestHandlerReusesBodyBuffers sends allowed and denied reviews at once
// through one handler, whose body buffers are reused as soon as a review is
// answered: every answer must still be its own request's (uid, verdict,
// and the denied image named), or something decoded pointed into a buffer
// another request had overwritten.
func TestHandlerReusesBodyBuffers(t *testing.T) {
	h := NewHandler(NewReviewer(testStates(), &fakePolicy{}, WithStages([]string{"dev", "prod"})))
	const workers, perWorker = 4, 100
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range perWorker {
				img, allowed := imgA, true
				if (w+i)%2 == 1 {
					img, allowed = imgB, false
				}
				req := podRequest(t, nil, img)
				req.UID = types.UID(fmt.Sprintf("uid-%d-%d", w, i))
				// Pad so that bodies differ in length as well as content.
				req.Name = strings.Repeat("p", i)
				rec := httptest.NewRecorder()
				hr := httptest.NewRequest(http.MethodPost, "/admission/validate/prod", bytes.NewReader(reviewBody(t, "admission.k8s.io/v1", req)))
				hr.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(rec, hr)
				var out admissionv1.AdmissionReview
				if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
					errs <- fmt.Errorf("%s: answer %s: %v", req.UID, rec.Body.Bytes(), err)
					return
				}
				r := out.Response
				switch {
				case r.UID != req.UID:
					errs <- fmt.Errorf("answer for %s carries uid %s", req.UID, r.UID)
					return
				case r.Allowed != allowed:
					errs <- fmt.Errorf("%s (%s): allowed = %v", req.UID, img, r.Allowed)
					return
				case !allowed && (r.Result == nil || !strings.Contains(r.Result.Message, img)):
					errs <- fmt.Errorf("%s: denial does not name %s: %+v", req.UID, img, r.Result)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
