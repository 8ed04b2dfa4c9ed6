// Package policy compiles stagegate's Rego policies once and evaluates them
// with prepared queries: package stagegate.promotion for promotion requests
// and package stagegate.admission for admitted workloads.
//
// The config (stage order, per-stage settings) reaches the policies as
// data.stagegate.config, through an in-memory store that never changes after
// New. An Engine is immutable and safe for concurrent use.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/open-policy-agent/opa/v1/util"
)

// The queries bind every output through a comprehension so that a rule the
// policy leaves undefined (no warn rule, break_glass_allowed false) yields an
// empty collection instead of making the whole query undefined.
const (
	promotionQuery = `deny := {m | some m in data.stagegate.promotion.deny}`
	admissionQuery = `deny := {m | some m in data.stagegate.admission.deny}
warn := {m | some m in data.stagegate.admission.warn}
break_glass := {x | x := data.stagegate.admission.break_glass_allowed}`
)

// requiredRules must exist after compilation; see ErrMissingRule.
var requiredRules = []string{
	"data.stagegate.promotion.deny",
	"data.stagegate.admission.deny",
}

// Engine evaluates the promotion and admission policies.
type Engine struct {
	digest    string
	promotion rego.PreparedEvalQuery
	admission rego.PreparedEvalQuery
}

// Option configures an Engine.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger sets the logger that receives the output of Rego print() calls,
// at debug level. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// New loads every *.rego file at the root of fsys except *_test.rego,
// compiles them once, and prepares the promotion and admission queries.
// config becomes data.stagegate.config. Compile errors name file:line.
func New(ctx context.Context, fsys fs.FS, config map[string]any, opts ...Option) (*Engine, error) {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}

	files, err := readPolicies(fsys)
	if err != nil {
		return nil, err
	}
	configJSON, configDoc, err := canonicalConfig(config)
	if err != nil {
		return nil, err
	}

	store := inmem.NewFromObjectWithOpts(
		map[string]any{"stagegate": map[string]any{"config": configDoc}},
		// The config was just decoded from JSON, so converting it to AST once
		// here spares every evaluation the conversion.
		inmem.OptRoundTripOnWrite(false),
		inmem.OptReturnASTValuesOnRead(true),
	)
	compiler, err := compile(ctx, store, files)
	if err != nil {
		return nil, err
	}

	hook := printHook{logger: o.logger}
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		pq, err := rego.New(
			rego.Query(query),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.PrintHook(hook),
			rego.EnablePrintStatements(true),
			// Results stay AST values: the decision is read straight from
			// them, without a conversion to Go maps and slices.
			rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }),
		).PrepareForEval(ctx)
		if err != nil {
			return pq, fmt.Errorf("policy: prepare query: %w", err)
		}
		return pq, nil
	}

	e := &Engine{digest: digest(files, configJSON)}
	if e.promotion, err = prepare(promotionQuery); err != nil {
		return nil, err
	}
	if e.admission, err = prepare(admissionQuery); err != nil {
		return nil, err
	}
	return e, nil
}

// Digest is "sha256:<hex>" over the sorted policy file names and contents and
// the canonical config JSON. Promotion predicates record it, so that a
// decision can be traced to the exact policy and config that made it.
func (e *Engine) Digest() string { return e.digest }

// Promotion evaluates package stagegate.promotion and returns its deny
// messages, sorted. An empty result allows the promotion.
func (e *Engine) Promotion(ctx context.Context, in PromotionInput) ([]string, error) {
	input, err := promotionValue(in)
	if err != nil {
		return nil, err
	}
	rs, err := e.promotion.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return nil, fmt.Errorf("policy: %w: promotion: %w", ErrEval, err)
	}
	b, err := onlyResult(rs, "promotion")
	if err != nil {
		return nil, err
	}
	return messages(b["deny"]), nil
}

// Admission evaluates package stagegate.admission with one prepared query
// and returns its decision; Deny and Warn are sorted.
func (e *Engine) Admission(ctx context.Context, in AdmissionInput) (AdmissionDecision, error) {
	rs, err := e.admission.Eval(ctx, rego.EvalParsedInput(admissionValue(&in)))
	if err != nil {
		return AdmissionDecision{}, fmt.Errorf("policy: %w: admission: %w", ErrEval, err)
	}
	b, err := onlyResult(rs, "admission")
	if err != nil {
		return AdmissionDecision{}, err
	}
	d := AdmissionDecision{Deny: messages(b["deny"]), Warn: messages(b["warn"])}
	if s, ok := b["break_glass"].(ast.Set); ok {
		d.BreakGlassAllowed = s.Contains(ast.InternedTerm(true))
	}
	return d, nil
}

func onlyResult(rs rego.ResultSet, what string) (rego.Vars, error) {
	// The query binds comprehensions only, so anything but one result means
	// the policy or the engine is broken: fail closed.
	if len(rs) != 1 {
		return nil, fmt.Errorf("policy: %w: %s: %d results, want 1", ErrEval, what, len(rs))
	}
	return rs[0].Bindings, nil
}

// messages turns a set of messages into a sorted slice. A message that is not
// a string still counts, in its Rego text form: dropping it would allow what
// the policy meant to deny.
func messages(v any) []string {
	s, ok := v.(ast.Set)
	if !ok || s.Len() == 0 {
		return []string{}
	}
	out := make([]string, 0, s.Len())
	s.Foreach(func(t *ast.Term) {
		if str, ok := t.Value.(ast.String); ok {
			out = append(out, string(str))
			return
		}
		out = append(out, t.Value.String())
	})
	slices.Sort(out)
	return out
}

type policyFile struct {
	name    string
	content []byte
}

func readPolicies(fsys fs.FS) ([]policyFile, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("policy: read policies: %w", err)
	}
	var files []policyFile
	for _, ent := range entries {
		name := ent.Name()
		if ent.IsDir() || path.Ext(name) != ".rego" || strings.HasSuffix(name, "_test.rego") {
			continue
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("policy: read %s: %w", name, err)
		}
		files = append(files, policyFile{name: name, content: b})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("policy: %w", ErrNoPolicies)
	}
	// fs.ReadDir sorts by name already; Digest relies on the order.
	slices.SortFunc(files, func(a, b policyFile) int { return strings.Compare(a.name, b.name) })
	return files, nil
}

// canonicalConfig returns config as canonical JSON (object keys sorted, as
// encoding/json writes maps) and as the decoded JSON document the store holds.
func canonicalConfig(config map[string]any) ([]byte, any, error) {
	if config == nil {
		config = map[string]any{}
	}
	raw, err := json.Marshal(config)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w: %w", ErrConfig, err)
	}
	// Decoding and encoding again turns structs and typed maps into plain
	// JSON objects with sorted keys, so equal configs give equal bytes.
	var doc any
	if err := util.UnmarshalJSON(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("policy: %w: %w", ErrConfig, err)
	}
	canonical, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w: %w", ErrConfig, err)
	}
	return canonical, doc, nil
}

func compile(ctx context.Context, store storage.Store, files []policyFile) (*ast.Compiler, error) {
	modules := make(map[string]*ast.Module, len(files))
	var parseErrs ast.Errors
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.name, string(f.content), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			var errs ast.Errors
			if errors.As(err, &errs) {
				parseErrs = append(parseErrs, errs...)
				continue
			}
			return nil, fmt.Errorf("policy: %w: %s: %w", ErrCompile, f.name, err)
		}
		modules[f.name] = m
	}
	if len(parseErrs) > 0 {
		return nil, fmt.Errorf("policy: %w: %w", ErrCompile, parseErrs)
	}

	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrCompile, err)
	}
	defer store.Abort(ctx, txn)

	c := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(true).
		// A rule that would shadow the config document is an error, not a
		// silent override.
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("policy: %w: %w", ErrCompile, c.Errors)
	}
	for _, r := range requiredRules {
		if len(c.GetRulesExact(ast.MustParseRef(r))) == 0 {
			return nil, fmt.Errorf("policy: %w: no rule %s", ErrMissingRule, r)
		}
	}
	return c, nil
}

func digest(files []policyFile, configJSON []byte) string {
	h := sha256.New()
	// Length prefixes keep the framing unambiguous: no two different sets of
	// files and config hash the same bytes.
	for _, f := range files {
		fmt.Fprintf(h, "file %d %s %d\n", len(f.name), f.name, len(f.content))
		h.Write(f.content)
	}
	fmt.Fprintf(h, "config %d\n", len(configJSON))
	h.Write(configJSON)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// printHook sends Rego print() output to the logger, so that policy authors
// can debug a policy in a running server.
type printHook struct{ logger *slog.Logger }

func (h printHook) Print(pctx print.Context, msg string) error {
	var loc string
	if pctx.Location != nil {
		loc = pctx.Location.String()
	}
	h.logger.DebugContext(pctx.Context, "policy: print", "location", loc, "message", msg)
	return nil
}

// promotionValue converts the input through JSON: promotion is not a hot
// path, and Evidence holds arbitrary JSON that only a round trip normalises.
func promotionValue(in PromotionInput) (ast.Value, error) {
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("policy: encode promotion input: %w", err)
	}
	v, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("policy: encode promotion input: %w", err)
	}
	return v, nil
}
