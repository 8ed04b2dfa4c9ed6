package admission

import (
	"errors"
	"maps"
	"slices"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

func TestExtractWorkload(t *testing.T) {
	tmplImages := []containerImage{
		{Container: "init", Type: typeInitContainer, Image: "busybox:1.36"},
		{Container: "app", Type: typeContainer, Image: "registry.example.com/shop/web@" + digestA},
	}
	tests := map[string]struct {
		file        string
		op          admissionv1.Operation
		subResource string
		wantKind    string
		wantNS      string
		wantName    string
		wantBG      string
		wantLabels  map[string]string
		wantImages  []containerImage
		wantErr     error
	}{
		"pod with every container type": {
			file: "pod.yaml", op: admissionv1.Create, wantKind: "Pod", wantNS: "shop", wantName: "web",
			wantBG:     "INC-42 hotfix",
			wantLabels: map[string]string{"app": "web", "stagegate.dev/stage": "prod"},
			wantImages: []containerImage{
				{Container: "init", Type: typeInitContainer, Image: "busybox:1.36"},
				{Container: "app", Type: typeContainer, Image: "registry.example.com/shop/web@" + digestA},
				{Container: "sidecar", Type: typeContainer, Image: "envoyproxy/envoy:v1.30"},
				{Container: "debug", Type: typeEphemeralContainer, Image: "busybox"},
			},
		},
		"pod ephemeralcontainers subresource": {
			file: "pod.yaml", op: admissionv1.Update, subResource: "ephemeralcontainers", wantKind: "Pod", wantNS: "shop", wantName: "web",
			wantBG:     "INC-42 hotfix",
			wantLabels: map[string]string{"app": "web", "stagegate.dev/stage": "prod"},
			wantImages: []containerImage{
				{Container: "init", Type: typeInitContainer, Image: "busybox:1.36"},
				{Container: "app", Type: typeContainer, Image: "registry.example.com/shop/web@" + digestA},
				{Container: "sidecar", Type: typeContainer, Image: "envoyproxy/envoy:v1.30"},
				{Container: "debug", Type: typeEphemeralContainer, Image: "busybox"},
			},
		},
		"pod status subresource has no images": {
			file: "pod.yaml", op: admissionv1.Update, subResource: "status", wantKind: "Pod", wantNS: "shop", wantName: "web",
		},
		"pod generateName fallback": {
			file: "pod-generatename.yaml", op: admissionv1.Create, wantKind: "Pod", wantName: "web-",
			wantImages: []containerImage{{Container: "app", Type: typeContainer, Image: "nginx"}},
		},
		"deployment takes break-glass from template": {
			file: "deployment.yaml", op: admissionv1.Create, wantKind: "Deployment", wantNS: "shop", wantName: "web",
			wantBG: "from template", wantLabels: map[string]string{"tier": "frontend"}, wantImages: tmplImages,
		},
		"replicaset": {
			file: "replicaset.yaml", op: admissionv1.Create, wantKind: "ReplicaSet", wantNS: "shop", wantName: "web",
			wantBG: "from template", wantLabels: map[string]string{"tier": "frontend"}, wantImages: tmplImages,
		},
		"statefulset": {
			file: "statefulset.yaml", op: admissionv1.Update, wantKind: "StatefulSet", wantNS: "shop", wantName: "web",
			wantBG: "from template", wantLabels: map[string]string{"tier": "frontend"}, wantImages: tmplImages,
		},
		"daemonset": {
			file: "daemonset.yaml", op: admissionv1.Create, wantKind: "DaemonSet", wantNS: "shop", wantName: "web",
			wantBG: "from template", wantLabels: map[string]string{"tier": "frontend"}, wantImages: tmplImages,
		},
		"job: object annotation wins over template": {
			file: "job.yaml", op: admissionv1.Create, wantKind: "Job", wantNS: "shop", wantName: "migrate",
			wantBG: "object wins", wantImages: tmplImages,
		},
		"cronjob": {
			file: "cronjob.yaml", op: admissionv1.Create, wantKind: "CronJob", wantNS: "shop", wantName: "nightly",
			wantBG: "from template", wantImages: tmplImages,
		},
		"replicationcontroller": {
			file: "replicationcontroller.yaml", op: admissionv1.Create, wantKind: "ReplicationController", wantNS: "shop", wantName: "legacy",
			wantBG: "from template", wantImages: tmplImages,
		},
		"replicationcontroller without template": {
			file: "replicationcontroller-notemplate.yaml", op: admissionv1.Create, wantKind: "ReplicationController", wantNS: "shop", wantName: "empty",
		},
		"kind without a pod spec has no images": {
			file: "service.yaml", op: admissionv1.Create, wantKind: "Service", wantNS: "shop", wantName: "web",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := requestFor(t, fixtureJSON(t, tc.file), tc.op, tc.subResource)
			w, err := extractWorkload(req, nil)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if w.Kind != tc.wantKind || w.Namespace != tc.wantNS || w.Name != tc.wantName {
				t.Errorf("workload = %s/%s/%s, want %s/%s/%s", w.Namespace, w.Kind, w.Name, tc.wantNS, tc.wantKind, tc.wantName)
			}
			if w.BreakGlass != tc.wantBG {
				t.Errorf("break-glass = %q, want %q", w.BreakGlass, tc.wantBG)
			}
			if tc.wantLabels != nil && !maps.Equal(w.Labels, tc.wantLabels) {
				t.Errorf("labels = %v, want %v", w.Labels, tc.wantLabels)
			}
			if got := withoutPaths(w.Images); !slices.Equal(got, tc.wantImages) {
				t.Errorf("images =\n%v\nwant\n%v", got, tc.wantImages)
			}
		})
	}
}

// withoutPaths drops the JSON pointers, which TestImagePaths checks.
func withoutPaths(in []containerImage) []containerImage {
	var out []containerImage
	for _, c := range in {
		c.Path = ""
		out = append(out, c)
	}
	return out
}

func TestExtractWorkloadBadObject(t *testing.T) {
	tests := map[string][]byte{
		"not json":     []byte(`{"apiVersion":"v1","kind":"Pod",`),
		"wrong type":   []byte(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":"nginx"}}`),
		"empty object": nil,
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			req := requestFor(t, []byte(`{"apiVersion":"v1","kind":"Pod"}`), admissionv1.Create, "")
			req.Object.Raw = raw
			if _, err := extractWorkload(req, nil); !errors.Is(err, ErrDecode) {
				t.Fatalf("err = %v, want ErrDecode", err)
			}
		})
	}
}

func TestParseImage(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    imageRef
		wantErr bool
	}{
		"docker hub short name": {
			in:   "nginx",
			want: imageRef{Name: "index.docker.io/library/nginx:latest", Registry: "index.docker.io", Repository: "index.docker.io/library/nginx", Tag: "latest"},
		},
		"docker.io alias with tag": {
			in:   "docker.io/envoyproxy/envoy:v1.30",
			want: imageRef{Name: "index.docker.io/envoyproxy/envoy:v1.30", Registry: "index.docker.io", Repository: "index.docker.io/envoyproxy/envoy", Tag: "v1.30"},
		},
		"registry with port and digest": {
			in:   "localhost:5000/shop/web@" + digestA,
			want: imageRef{Name: "localhost:5000/shop/web@" + digestA, Registry: "localhost:5000", Repository: "localhost:5000/shop/web", Digest: digestA},
		},
		"tag and digest: digest wins, tag kept": {
			in:   "ghcr.io/acme/api:1.2@" + digestB,
			want: imageRef{Name: "ghcr.io/acme/api@" + digestB, Registry: "ghcr.io", Repository: "ghcr.io/acme/api", Tag: "1.2", Digest: digestB},
		},
		"uppercase digest": {in: "nginx@sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", wantErr: true},
		"sha512 digest":    {in: "nginx@sha512:" + digestA[7:] + digestA[7:], wantErr: true},
		"short digest":     {in: "nginx@sha256:abc", wantErr: true},
		"uppercase repo":   {in: "Nginx:1", wantErr: true},
		"url scheme":       {in: "https://ghcr.io/acme/api:1", wantErr: true},
		"empty":            {in: "", wantErr: true},
		"two at signs":     {in: "nginx@" + digestA + "@" + digestB, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseImage(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrBadReference) {
					t.Fatalf("parseImage(%q) = %+v, %v; want ErrBadReference", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("parseImage(%q) =\n%+v\nwant\n%+v", tc.in, got, tc.want)
			}
		})
	}
}
