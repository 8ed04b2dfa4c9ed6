// Package deploy is the end-to-end test of what `stagegate manifests` and
// `stagegate certs generate` give an operator (issue 14, "Deploy"): the
// commands run as a user runs them, and kubectl applies their output to a
// real kube-apiserver (envtest, bin/k8s), which must accept every object.
// There is no kubelet or controller manager, so nothing runs: what the
// StatefulSet controller would create is created by the test, from the
// stored StatefulSet, as the controller does.
//
// Run it with `CI=true go test ./test/e2e/deploy/ -v` once hack/tools.sh
// has built bin/k8s.
package deploy

import (
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }
