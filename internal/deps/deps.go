// Package deps pins the chosen libraries until the packages that use them land.
package deps

import (
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/sigstore/cosign/v2/pkg/cosign"
	_ "github.com/sigstore/sigstore/pkg/signature/dsse"
	_ "github.com/spf13/cobra"
	_ "github.com/transparency-dev/merkle/compact"
	_ "github.com/transparency-dev/merkle/proof"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/mod/sumdb/note"
	_ "k8s.io/api/admission/v1"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
	_ "sigs.k8s.io/yaml"
)
