package admission

import (
	"errors"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// TestExtractEveryImage covers the images a pod runs beyond containers
// (image volumes), and kinds with no typed shape: custom workloads that
// carry a pod template are found generically, kinds without one have no
// images, and a pod spec that cannot be read is an error.
func TestExtractEveryImage(t *testing.T) {
	const vol = `"volumes":[{"name":"cfg","configMap":{"name":"x"}},{"name":"models","image":{"reference":"registry.example.com/ml/models:v3","pullPolicy":"IfNotPresent"}}]`
	const spec = `{"containers":[{"name":"app","image":"registry.example.com/shop/web@` + digestA + `"}],` + vol + `}`
	tmpl := `{"metadata":{"annotations":{"stagegate.dev/break-glass":"from template"}},"spec":` + spec + `}`
	want := func(prefix string) []containerImage {
		return []containerImage{
			{Container: "app", Type: typeContainer, Image: "registry.example.com/shop/web@" + digestA, Path: prefix + "/containers/0/image"},
			{Container: "models", Type: typeImageVolume, Image: "registry.example.com/ml/models:v3", Path: prefix + "/volumes/1/image/reference"},
		}
	}
	tests := map[string]struct {
		obj        string
		wantImages []containerImage
		wantBG     string
		wantErr    error
		wantMsg    []string
	}{
		"pod with an image volume": {
			obj:        `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"shop"},"spec":` + spec + `}`,
			wantImages: want("/spec"),
		},
		"deployment template with an image volume": {
			obj:        `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"shop"},"spec":{"template":` + tmpl + `}}`,
			wantImages: want("/spec/template/spec"), wantBG: "from template",
		},
		"cronjob template with an image volume": {
			obj:        `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c","namespace":"shop"},"spec":{"jobTemplate":{"spec":{"template":` + tmpl + `}}}}`,
			wantImages: want("/spec/jobTemplate/spec/template/spec"), wantBG: "from template",
		},
		"argo rollout": {
			obj:        `{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{"name":"r","namespace":"shop"},"spec":{"strategy":{"canary":{}},"template":` + tmpl + `}}`,
			wantImages: want("/spec/template/spec"), wantBG: "from template",
		},
		"knative service": {
			obj:        `{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"k","namespace":"shop"},"spec":{"template":` + tmpl + `}}`,
			wantImages: want("/spec/template/spec"), wantBG: "from template",
		},
		"openkruise cloneset": {
			obj:        `{"apiVersion":"apps.kruise.io/v1alpha1","kind":"CloneSet","metadata":{"name":"c","namespace":"shop"},"spec":{"replicas":3,"template":` + tmpl + `}}`,
			wantImages: want("/spec/template/spec"), wantBG: "from template",
		},
		"core podtemplate": {
			obj:        `{"apiVersion":"v1","kind":"PodTemplate","metadata":{"name":"t","namespace":"shop"},"template":` + tmpl + `}`,
			wantImages: want("/template/spec"), wantBG: "from template",
		},
		"pod specs in a list (e.g. worker groups)": {
			obj: `{"apiVersion":"ray.io/v1","kind":"RayCluster","metadata":{"name":"r","namespace":"shop"},"spec":{"workerGroupSpecs":[{"template":{"spec":{"containers":[{"name":"w","image":"ray:2"}]}}},{"template":{"spec":{"initContainers":[{"name":"i","image":"busybox"}],"containers":[]}}}]}}`,
			wantImages: []containerImage{
				{Container: "w", Type: typeContainer, Image: "ray:2", Path: "/spec/workerGroupSpecs/0/template/spec/containers/0/image"},
				{Container: "i", Type: typeInitContainer, Image: "busybox", Path: "/spec/workerGroupSpecs/1/template/spec/initContainers/0/image"},
			},
		},
		"object annotation wins over the template's": {
			obj:        `{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{"name":"r","namespace":"shop","annotations":{"stagegate.dev/break-glass":"object"}},"spec":{"template":` + tmpl + `}}`,
			wantImages: want("/spec/template/spec"), wantBG: "object",
		},
		"configmap has no images": {
			obj: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"shop"},"data":{"containers":"not a pod spec: a string is a value, not an object"}}`,
		},
		"secret has no images": {
			obj: `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"shop"},"type":"Opaque","data":{"k":"dg=="}}`,
		},
		"status is not searched": {
			obj: `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"status":{"containers":[{"image":"reported"}]}}`,
		},
		"unreadable containers": {
			obj:     `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"spec":{"template":{"spec":{"containers":"nginx"}}}}`,
			wantErr: ErrUnreadable,
			wantMsg: []string{`example.com/v1/Widget "w"`, "/spec/template/spec", "--skip-resource widgets.example.com"},
		},
		"image of the wrong type": {
			obj:     `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"spec":{"containers":[{"name":"a","image":["x"]}]}}`,
			wantErr: ErrUnreadable,
		},
		"case-changed field cannot hide an image": {
			obj:     `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"spec":{"containers":[{"name":"a","image":"x","Image":"y"}]}}`,
			wantErr: ErrUnreadable,
		},
		"a template with only a case-changed containers field": {
			obj:     `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"spec":{"template":{"spec":{"Containers":[{"name":"a","image":"x"}]}}}}`,
			wantErr: ErrUnreadable, wantMsg: []string{`"Containers"`},
		},
		"nested beyond any real workload": {
			obj:     `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"spec":` + strings.Repeat(`{"a":`, 40) + `{}` + strings.Repeat(`}`, 40) + `}`,
			wantErr: ErrUnreadable, wantMsg: []string{"nested deeper"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := requestFor(t, []byte(tc.obj), admissionv1.Create, "")
			w, err := extractWorkload(req, nil)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if err != nil {
				return
			}
			if !slices.Equal(w.Images, tc.wantImages) {
				t.Errorf("images =\n%+v\nwant\n%+v", w.Images, tc.wantImages)
			}
			if w.BreakGlass != tc.wantBG {
				t.Errorf("break-glass = %q, want %q", w.BreakGlass, tc.wantBG)
			}
		})
	}
}

// TestTypedAndGenericAgree: the typed fast path and the generic search find
// the same images at the same paths, so the kinds a test suite happens to
// cover are no different from the others.
func TestTypedAndGenericAgree(t *testing.T) {
	for _, file := range []string{"pod.yaml", "deployment.yaml", "cronjob.yaml", "job.yaml", "statefulset.yaml"} {
		t.Run(file, func(t *testing.T) {
			req := requestFor(t, fixtureJSON(t, file), admissionv1.Create, "")
			typed, err := extractWorkload(req, nil)
			if err != nil {
				t.Fatal(err)
			}
			w := typed
			w.Images = nil
			generic, err := extractGeneric(req, w)
			if err != nil {
				t.Fatal(err)
			}
			sortImages := func(in []containerImage) []containerImage {
				out := slices.Clone(in)
				slices.SortFunc(out, func(a, b containerImage) int { return strings.Compare(a.Path, b.Path) })
				return out
			}
			if !slices.Equal(sortImages(typed.Images), sortImages(generic.Images)) {
				t.Errorf("typed %+v\ngeneric %+v", typed.Images, generic.Images)
			}
			if len(typed.Images) == 0 {
				t.Error("fixture has no images")
			}
		})
	}
}
