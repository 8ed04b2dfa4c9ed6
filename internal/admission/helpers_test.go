package admission

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	digestC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	digestD = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
)

// fixtureJSON reads testdata/name as JSON (YAML fixtures are converted).
func fixtureJSON(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".yaml") {
		if b, err = sigsyaml.YAMLToJSON(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// requestFor builds the request the API server would send for obj.
func requestFor(t testing.TB, obj []byte, op admissionv1.Operation, subResource string) *admissionv1.AdmissionRequest {
	t.Helper()
	var head objectHead
	if err := json.Unmarshal(obj, &head); err != nil {
		t.Fatal(err)
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		t.Fatal(err)
	}
	resource := strings.ToLower(head.Kind) + "s"
	if k, ok := lookupKind(gv.Group, head.Kind); ok {
		resource = k.resource
	}
	return &admissionv1.AdmissionRequest{
		UID:         "uid-1",
		Kind:        metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: head.Kind},
		Resource:    metav1.GroupVersionResource{Group: gv.Group, Version: gv.Version, Resource: resource},
		SubResource: subResource,
		Name:        head.Metadata.Name,
		Namespace:   head.Metadata.Namespace,
		Operation:   op,
		UserInfo:    authenticationv1.UserInfo{Username: "alice", Groups: []string{"devs"}},
		Object:      runtime.RawExtension{Raw: obj},
	}
}
