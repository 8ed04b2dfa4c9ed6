package policy

import "errors"

// Sentinel errors returned by this package. Callers test them with errors.Is;
// compile errors also wrap the OPA ast.Errors, whose entries carry file:line.
var (
	// ErrNoPolicies means the policy file system holds no *.rego file other
	// than tests.
	ErrNoPolicies = errors.New("no policy files")

	// ErrCompile means the policies do not parse or compile.
	ErrCompile = errors.New("compile")

	// ErrMissingRule means a package stagegate needs does not define its
	// deny rule. It fails New instead of allowing everything at run time:
	// a misspelt package name would otherwise leave the gate open.
	ErrMissingRule = errors.New("missing rule")

	// ErrConfig means the config cannot be turned into a JSON document.
	ErrConfig = errors.New("config")

	// ErrEval means a policy could not be evaluated (a builtin error, a
	// cancelled context, an undefined decision). Callers must fail closed.
	ErrEval = errors.New("eval")
)
