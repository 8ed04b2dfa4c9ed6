// Package docs runs the guide in docs/patterns: every page names the
// environment its commands need, the test starts it from real parts (a
// kube-apiserver, a distribution registry, `stagegate serve`), runs each
// console block in one bash per page and compares what each command printed
// with what the page shows. A page whose commands stop working fails CI.
package docs

import (
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }
