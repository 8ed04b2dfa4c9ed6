// Package admission is the end-to-end suite of the admission webhook (issue
// 3): a real kube-apiserver (envtest, bin/k8s) calls a real `stagegate
// serve` process over TLS, through the ValidatingWebhookConfiguration that
// `stagegate manifests` generates, and every scenario asserts the answer the
// API server gives its client.
//
// Run it with `go test ./test/e2e/admission/ -v` once hack/tools.sh has
// built bin/k8s and bin/registry.
package admission

import (
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }
