//go:build tools

// The API packages controller-gen reads, so that go.mod pins them and
// go.sum holds their hashes.
package tools

import _ "github.com/fluxcd/helm-controller/api/v2"
