// Package registry is the end-to-end suite of registry-native promotion
// (issue 4): two clusters that share no ledger, each a real kube-apiserver
// (envtest, bin/k8s) calling its own `stagegate serve`, and real CNCF
// distribution registries between them. Promotions made in cluster A travel
// as cosign attestations that the real cosign CLI (bin/cosign) verifies and
// that cluster B imports; stage tags, copies to an authenticated registry
// and evidence gates are checked against the registries with crane and
// go-containerregistry.
//
// Run it with `go test ./test/e2e/registry/ -v` once hack/tools.sh has
// built bin/k8s, bin/registry, bin/cosign and bin/crane.
package registry

import (
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }
