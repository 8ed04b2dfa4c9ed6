// Package policies holds stagegate's default Rego policies and their tests.
//
// FS embeds every .rego file, tests included, so that the files shipped are
// the files tested; the policy engine skips *_test.rego when it loads them.
package policies

import "embed"

// FS holds the default policies (promotion.rego, admission.rego) and their
// tests, at its root.
//
//go:embed *.rego
var FS embed.FS
