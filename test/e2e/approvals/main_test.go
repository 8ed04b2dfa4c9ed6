// Package approvals is the end-to-end test of semi-automatic promotion
// (issue 16): a real `stagegate serve` with a real registry, two
// identities driving the real CLI, and the real cosign CLI verifying the
// attestation.
package approvals

import (
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }
