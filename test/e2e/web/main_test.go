// Package web is the end-to-end test of the web view (issue 17): a real
// `stagegate serve` with a real ledger and registry, driven over HTTPS
// as a browser would (hostile_test.go) and by a real headless Chromium
// (browser_test.go).
package web

import (
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }
