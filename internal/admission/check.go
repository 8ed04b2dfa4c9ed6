package admission

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// CheckResult is the what-if decision for one object of a manifest.
type CheckResult struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Allowed   bool   `json:"allowed"`
	// Message says why the object would be refused, or that it is not
	// checked at all.
	Message  string   `json:"message,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// checkNamespace is the namespace of objects that name none, as kubectl
// would apply them without --namespace.
const checkNamespace = "default"

// Check makes, offline, the decision the webhook would make for each object
// of a multi-document YAML (or JSON) manifest applied in stage. It builds the
// AdmissionRequest the API server would send for a CREATE, as a dry run so
// that nothing is recorded. Objects without images are allowed, as the
// webhook allows them. Only a malformed manifest is an error.
//
// The Flux source objects a HelmChart or HelmRelease refers to are looked
// up among the manifest's objects (where they are applied), then from the
// Reviewer's Sources if it has any: the webhook's answer for a cluster
// where the manifest is applied.
func (r *Reviewer) Check(ctx context.Context, stage string, manifests io.Reader) ([]CheckResult, error) {
	objs, err := readManifest(manifests)
	if err != nil {
		return nil, err
	}
	inFiles := objectSources{}
	for _, o := range objs {
		inFiles.add(o.head, o.namespace, o.raw)
	}
	src := chainSources{inFiles, r.sources}
	return checkObjects(ctx, stage, objs, func(ctx context.Context, stage string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return r.reviewFrom(ctx, stage, req, nil, src)
	})
}

// ReviewFunc decides one AdmissionRequest: Reviewer.Review, or a client
// that sends it to a running webhook.
type ReviewFunc func(ctx context.Context, stage string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// CheckWith is Check with the decision made by review, so that the CLI can
// ask a running webhook the very same questions.
func CheckWith(ctx context.Context, stage string, manifests io.Reader, review ReviewFunc) ([]CheckResult, error) {
	objs, err := readManifest(manifests)
	if err != nil {
		return nil, err
	}
	return checkObjects(ctx, stage, objs, review)
}

// manifestObject is one object of a manifest, with where it came from.
type manifestObject struct {
	doc       int
	raw       json.RawMessage
	head      objectHead
	namespace string
}

// readManifest reads every object of a manifest before any is decided, so
// that an object may refer to one further down (a HelmChart above its
// HelmRepository).
func readManifest(manifests io.Reader) ([]manifestObject, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(manifests))
	var out []manifestObject
	for doc := 1; ; doc++ {
		raw, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("admission: read manifest document %d: %w", doc, err)
		}
		js, err := sigsyaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("admission: manifest document %d: %w", doc, err)
		}
		objs, err := expandList(js)
		if err != nil {
			return nil, fmt.Errorf("admission: manifest document %d: %w", doc, err)
		}
		for _, obj := range objs {
			var head objectHead
			if err := json.Unmarshal(obj, &head); err != nil {
				return nil, fmt.Errorf("admission: manifest document %d: %w: %v", doc, ErrDecode, err)
			}
			ns := head.Metadata.Namespace
			if ns == "" {
				ns = checkNamespace
			}
			out = append(out, manifestObject{doc: doc, raw: obj, head: head, namespace: ns})
		}
	}
}

func checkObjects(ctx context.Context, stage string, objs []manifestObject, review ReviewFunc) ([]CheckResult, error) {
	var results []CheckResult
	for _, o := range objs {
		res, err := checkObject(ctx, review, stage, fmt.Sprintf("check-%d-%d", o.doc, len(results)), o.raw)
		if err != nil {
			return nil, fmt.Errorf("admission: manifest document %d: %w", o.doc, err)
		}
		results = append(results, res)
	}
	return results, nil
}

// objectHead is the part of any object Check needs to route it.
type objectHead struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
		Namespace    string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// expandList returns the objects of one document: none for an empty
// document, the items of a List, or the document itself.
func expandList(js []byte) ([]json.RawMessage, error) {
	if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, nil
	}
	var head objectHead
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if head.APIVersion == "v1" && strings.HasSuffix(head.Kind, "List") {
		var out []json.RawMessage
		for _, item := range head.Items {
			objs, err := expandList(item)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	return []json.RawMessage{js}, nil
}

func checkObject(ctx context.Context, review ReviewFunc, stage, uid string, obj json.RawMessage) (CheckResult, error) {
	req, head, err := dryRunRequest(uid, obj)
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{Kind: head.Kind, Namespace: req.Namespace, Name: head.Metadata.Name}
	if res.Name == "" {
		res.Name = head.Metadata.GenerateName
	}
	resp := review(ctx, stage, req)
	res.Allowed = resp.Allowed
	res.Warnings = resp.Warnings
	if !resp.Allowed && resp.Result != nil {
		res.Message = resp.Result.Message
	}
	return res, nil
}

// DryRunRequest is the AdmissionRequest the API server would send for a
// dry-run CREATE of obj (JSON), with uid as its UID: the question Check asks,
// and continuous validation asks of a running pod. Being a dry run, its
// review records nothing, not even a break-glass.
func DryRunRequest(uid string, obj json.RawMessage) (*admissionv1.AdmissionRequest, error) {
	req, _, err := dryRunRequest(uid, obj)
	if err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	return req, nil
}

func dryRunRequest(uid string, obj json.RawMessage) (*admissionv1.AdmissionRequest, objectHead, error) {
	var head objectHead
	if err := json.Unmarshal(obj, &head); err != nil {
		return nil, head, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if head.APIVersion == "" || head.Kind == "" {
		return nil, head, fmt.Errorf("%w: object without apiVersion or kind", ErrDecode)
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return nil, head, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	// Every object goes to the webhook's decision, as the generated
	// configuration sends every namespaced kind: a custom workload with a
	// pod template is checked, and a kind with no pod spec is allowed.
	resourceName := strings.ToLower(head.Kind) + "s" // as informational as the API server's discovery would be
	if k, ok := lookupKind(gv.Group, head.Kind); ok {
		resourceName = k.resource
	}
	namespace := head.Metadata.Namespace
	if namespace == "" {
		namespace = checkNamespace
	}
	kind := metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: head.Kind}
	resource := metav1.GroupVersionResource{Group: gv.Group, Version: gv.Version, Resource: resourceName}
	dryRun := true
	return &admissionv1.AdmissionRequest{
		UID:             types.UID(uid),
		Kind:            kind,
		Resource:        resource,
		RequestKind:     &kind,
		RequestResource: &resource,
		Name:            head.Metadata.Name,
		Namespace:       namespace,
		Operation:       admissionv1.Create,
		Object:          runtime.RawExtension{Raw: obj},
		DryRun:          &dryRun,
	}, head, nil
}
