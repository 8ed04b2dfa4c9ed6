// Package ha tests serve as a replicated cluster: three real `stagegate
// serve` processes on loopback, Raft between them over the peer port
// (mutual TLS, fsync on), a real registry to promote from.
package ha

import (
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }
