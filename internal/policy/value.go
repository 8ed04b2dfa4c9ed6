package policy

import "github.com/open-policy-agent/opa/v1/ast"

// admissionValue builds the AdmissionInput document as an AST value directly.
// Admission is the hot path, and this spares the JSON encode and decode that
// ast.InterfaceToValue would do. It must produce exactly the document the
// JSON encoding of AdmissionInput gives, omitempty included, because that is
// what `opa eval`, `opa test` and policies/README.md show policy authors;
// TestAdmissionValueMatchesJSON holds it to that.
func admissionValue(in *AdmissionInput) ast.Value {
	o := make([][2]*ast.Term, 0, 8)
	o = append(o,
		ast.Item(kStage, str(in.Stage)),
		ast.Item(kOperation, str(in.Operation)),
	)
	o = optStr(o, kSubResource, in.SubResource)
	o = append(o,
		ast.Item(kDryRun, ast.InternedTerm(in.DryRun)),
		ast.Item(kUser, identityTerm(&in.User)),
		ast.Item(kWorkload, workloadTerm(&in.Workload)),
		ast.Item(kImages, imagesTerm(in.Images)),
	)
	o = optStr(o, kBreakGlass, in.BreakGlass)
	return ast.NewObject(o...)
}

func identityTerm(id *Identity) *ast.Term {
	o := make([][2]*ast.Term, 0, 3)
	o = append(o,
		ast.Item(kSubject, str(id.Subject)),
		ast.Item(kGroups, strList(id.Groups)),
	)
	o = optStr(o, kMethod, id.Method)
	return ast.NewTerm(ast.NewObject(o...))
}

func workloadTerm(w *Workload) *ast.Term {
	o := make([][2]*ast.Term, 0, 7)
	o = append(o,
		ast.Item(kGroup, str(w.Group)),
		ast.Item(kVersion, str(w.Version)),
		ast.Item(kKind, str(w.Kind)),
		ast.Item(kNamespace, str(w.Namespace)),
		ast.Item(kName, str(w.Name)),
	)
	o = optMap(o, kLabels, w.Labels)
	o = optMap(o, kAnnotations, w.Annotations)
	return ast.NewTerm(ast.NewObject(o...))
}

func imagesTerm(images []ContainerImage) *ast.Term {
	if images == nil {
		return ast.InternedNullTerm
	}
	terms := make([]*ast.Term, len(images))
	for i := range images {
		terms[i] = containerImageTerm(&images[i])
	}
	return ast.NewTerm(ast.NewArray(terms...))
}

func containerImageTerm(c *ContainerImage) *ast.Term {
	o := make([][2]*ast.Term, 0, 11)
	o = append(o,
		ast.Item(kContainer, str(c.Container)),
		ast.Item(kType, str(c.Type)),
		ast.Item(kReference, str(c.Reference)),
		ast.Item(kRepository, str(c.Repository)),
	)
	o = optStr(o, kTag, c.Tag)
	o = append(o, ast.Item(kDigest, str(c.Digest)))
	if len(c.Platforms) > 0 {
		o = append(o, ast.Item(kPlatforms, strList(c.Platforms)))
	}
	o = optMap(o, kLabels, c.Labels)
	o = append(o,
		ast.Item(kPinned, ast.InternedTerm(c.Pinned)),
		ast.Item(kState, stageStateTerm(&c.State)),
	)
	o = optStr(o, kError, c.Error)
	return ast.NewTerm(ast.NewObject(o...))
}

func stageStateTerm(s *StageState) *ast.Term {
	o := make([][2]*ast.Term, 0, 7)
	o = append(o, ast.Item(kPromoted, ast.InternedTerm(s.Promoted)))
	o = optStr(o, kPromotedAt, s.PromotedAt)
	o = optStr(o, kPromotedBy, s.PromotedBy)
	o = append(o, ast.Item(kRevoked, ast.InternedTerm(s.Revoked)))
	o = optStr(o, kRevokedAt, s.RevokedAt)
	o = optStr(o, kRevokedBy, s.RevokedBy)
	o = optStr(o, kReason, s.Reason)
	return ast.NewTerm(ast.NewObject(o...))
}

func str(s string) *ast.Term { return ast.InternedTerm(s) }

// strList mirrors encoding/json: a nil slice is null, an empty one [].
func strList(ss []string) *ast.Term {
	if ss == nil {
		return ast.InternedNullTerm
	}
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = str(s)
	}
	return ast.NewTerm(ast.NewArray(terms...))
}

// optStr appends key: s unless s is empty (omitempty).
func optStr(o [][2]*ast.Term, key *ast.Term, s string) [][2]*ast.Term {
	if s == "" {
		return o
	}
	return append(o, ast.Item(key, str(s)))
}

// optMap appends key: m unless m is empty (omitempty).
func optMap(o [][2]*ast.Term, key *ast.Term, m map[string]string) [][2]*ast.Term {
	if len(m) == 0 {
		return o
	}
	items := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		items = append(items, ast.Item(str(k), str(v)))
	}
	return append(o, ast.Item(key, ast.NewTerm(ast.NewObject(items...))))
}

// Object keys, built once: evaluation never modifies input terms.
var (
	kAnnotations = ast.StringTerm("annotations")
	kBreakGlass  = ast.StringTerm("breakGlass")
	kContainer   = ast.StringTerm("container")
	kDigest      = ast.StringTerm("digest")
	kDryRun      = ast.StringTerm("dryRun")
	kError       = ast.StringTerm("error")
	kGroup       = ast.StringTerm("group")
	kGroups      = ast.StringTerm("groups")
	kImages      = ast.StringTerm("images")
	kKind        = ast.StringTerm("kind")
	kLabels      = ast.StringTerm("labels")
	kMethod      = ast.StringTerm("method")
	kName        = ast.StringTerm("name")
	kNamespace   = ast.StringTerm("namespace")
	kOperation   = ast.StringTerm("operation")
	kPinned      = ast.StringTerm("pinned")
	kPlatforms   = ast.StringTerm("platforms")
	kPromoted    = ast.StringTerm("promoted")
	kPromotedAt  = ast.StringTerm("promotedAt")
	kPromotedBy  = ast.StringTerm("promotedBy")
	kReason      = ast.StringTerm("reason")
	kReference   = ast.StringTerm("reference")
	kRepository  = ast.StringTerm("repository")
	kRevoked     = ast.StringTerm("revoked")
	kRevokedAt   = ast.StringTerm("revokedAt")
	kRevokedBy   = ast.StringTerm("revokedBy")
	kStage       = ast.StringTerm("stage")
	kState       = ast.StringTerm("state")
	kSubResource = ast.StringTerm("subResource")
	kSubject     = ast.StringTerm("subject")
	kTag         = ast.StringTerm("tag")
	kType        = ast.StringTerm("type")
	kUser        = ast.StringTerm("user")
	kVersion     = ast.StringTerm("version")
	kWorkload    = ast.StringTerm("workload")
)
