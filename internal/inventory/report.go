package inventory

import (
	"context"
	"fmt"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// PolicyReportResource is the PolicyReport resource that Kyverno's Policy
// Reporter and other tools read.
var PolicyReportResource = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}

// Report fields.
const (
	// ReportName is the name of stagegate's PolicyReport in each namespace.
	ReportName = "stagegate"
	// PolicyName is the policy of every result; its rule is the stage.
	PolicyName = "stagegate"
	// fieldManager owns the reports' fields (server-side apply).
	fieldManager = "stagegate"
	// managedBy labels the reports stagegate wrote, so that a restarted
	// controller finds those it must remove.
	managedBy = "app.kubernetes.io/managed-by"
)

// reports writes PolicyReports through the dynamic client.
type reports struct {
	client dynamic.Interface
}

// write applies ns's report: one fail result per violation, naming the pod
// or GitOps object, stamped with when it began, and the count of those that
// pass. An unchanged namespace
// applies the same object, which the API server does not store again.
func (r reports) write(ctx context.Context, ns string, violations []Violation, passed int) error {
	results := make([]any, 0, len(violations))
	for _, v := range violations {
		ts := v.Since
		apiVersion, kind := v.APIVersion, v.Kind
		if v.IsPod() {
			apiVersion, kind = "v1", "Pod"
		}
		props := map[string]any{
			"image":  v.Image,
			"digest": v.Digest,
			"stage":  v.Stage,
			"reason": string(v.Reason),
		}
		if v.HasLedgerIndex {
			props["ledgerIndex"] = strconv.FormatUint(v.LedgerIndex, 10)
		}
		results = append(results, map[string]any{
			"policy":     PolicyName,
			"rule":       v.Stage,
			"result":     "fail",
			"source":     "stagegate",
			"category":   string(v.Reason),
			"message":    v.Message,
			"scored":     true,
			"properties": props,
			"timestamp":  map[string]any{"seconds": ts.Unix(), "nanos": int64(ts.Nanosecond())},
			"resources": []any{map[string]any{
				"apiVersion": apiVersion, "kind": kind, "namespace": v.Namespace, "name": v.Pod, "uid": v.UID,
			}},
		})
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": PolicyReportResource.GroupVersion().String(),
		"kind":       "PolicyReport",
		"metadata": map[string]any{
			"name":      ReportName,
			"namespace": ns,
			"labels":    map[string]any{managedBy: fieldManager},
		},
		"summary": map[string]any{"pass": int64(passed), "fail": int64(len(violations)), "warn": int64(0), "error": int64(0), "skip": int64(0)},
		"results": results,
	}}
	_, err := r.client.Resource(PolicyReportResource).Namespace(ns).Apply(ctx, ReportName, u,
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("inventory: write the PolicyReport of namespace %q: %w", ns, err)
	}
	return nil
}

// remove deletes ns's report, e.g. when the namespace lost its stage label.
func (r reports) remove(ctx context.Context, ns string) error {
	err := r.client.Resource(PolicyReportResource).Namespace(ns).Delete(ctx, ReportName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("inventory: delete the PolicyReport of namespace %q: %w", ns, err)
	}
	return nil
}

// written returns the namespaces that hold a report of stagegate's, as an
// earlier run left them.
func (r reports) written(ctx context.Context) ([]string, error) {
	list, err := r.client.Resource(PolicyReportResource).List(ctx, metav1.ListOptions{LabelSelector: managedBy + "=" + fieldManager})
	if err != nil {
		return nil, fmt.Errorf("inventory: list PolicyReports (is the %s CRD installed?): %w", PolicyReportResource.GroupResource(), err)
	}
	var out []string
	for _, u := range list.Items {
		if u.GetName() == ReportName {
			out = append(out, u.GetNamespace())
		}
	}
	return out, nil
}
