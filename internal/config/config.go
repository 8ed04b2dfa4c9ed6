// Package config is the only code that reads the config file and the
// environment (env.go lists every variable). Everything else receives a
// validated *Config, or the Env.
//
// Precedence follows cert-manager's webhook: defaults, then the file, then
// flags; Validate runs last.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Modes of a stage at admission.
const (
	ModeEnforce = "enforce"
	ModeWarn    = "warn"
	ModeAudit   = "audit"
)

// Stage is one environment of the pipeline.
type Stage struct {
	Name string `json:"name"`
	// Groups may promote into this stage.
	Groups []string `json:"groups,omitempty"`
	// MinSoak is how long a digest must have been in the previous stage.
	MinSoak Duration `json:"minSoak,omitempty"`
	// Mode is enforce, warn or audit.
	Mode string `json:"mode,omitempty"`
	// BreakGlass allows the break-glass annotation in this stage.
	BreakGlass *bool `json:"breakGlass,omitempty"`
	// AllowTags admits tag references (with a warning); the last stage
	// defaults to false.
	AllowTags *bool `json:"allowTags,omitempty"`
	// RequiredEvidence lists predicate types that must be attested on the
	// image, by one of EvidenceKeys, before promotion.
	RequiredEvidence []string `json:"requiredEvidence,omitempty"`
	// Attest attaches the promotion (and revocation) attestation to the
	// image in its registry, the way `cosign attest` does.
	Attest bool `json:"attest,omitempty"`
	// Tag is moved to the promoted digest, e.g. "{{stage}}" or
	// "{{repository}}:{{stage}}" (the repository part is implied).
	Tag string `json:"tag,omitempty"`
	// FreshSource makes a promotion imported from the registry
	// (registrySource) count here only while every revocation list of
	// registrySource.revocationLists is at most registrySource.maxAge
	// old. The last stage defaults to true, the others to false.
	FreshSource *bool `json:"freshSource,omitempty"`
	// Target is a repository prefix the image is copied under, with its
	// signatures and attestations, e.g. "registry.prod:5000/mirror" makes
	// "registry.dev/team/app" into "registry.prod:5000/mirror/team/app".
	Target string `json:"target,omitempty"`
	// RevokeGroups, OverrideRevocationGroups, BreakGlassGroups and
	// BreakGlassMaxAge say who may undo or bypass promotions here; see
	// duties.go. For the group lists nil means the default and an empty
	// list nobody, so they are omitzero, not omitempty: a written-out
	// config must keep "nobody".
	RevokeGroups             []string `json:"revokeGroups,omitzero"`
	OverrideRevocationGroups []string `json:"overrideRevocationGroups,omitzero"`
	BreakGlassGroups         []string `json:"breakGlassGroups,omitzero"`
	BreakGlassMaxAge         Duration `json:"breakGlassMaxAge,omitempty"`
	// Approvals, if set, turns a promotion here into a request that others
	// approve (approvals.go).
	Approvals *Approvals `json:"approvals,omitempty"`
	// Windows and FreezeOverrideGroups: see windows.go.
	Windows              []Window `json:"windows,omitempty"`
	FreezeOverrideGroups []string `json:"freezeOverrideGroups,omitempty"`
	// OnViolation is what continuous validation does with a running pod
	// this stage would refuse now: report (the default) or evict.
	OnViolation string `json:"onViolation,omitempty"`
}

// RegistrySource lets a cluster that shares no ledger learn promotions from
// attestations in the registry.
type RegistrySource struct {
	Enabled bool `json:"enabled"`
	// TrustedKeys are the cosign public keys of the stagegates whose
	// promotions count here.
	TrustedKeys []string `json:"trustedKeys"`
	// Timeout bounds one registry fetch on the admission path; keep it well
	// below the webhook timeout.
	Timeout Duration `json:"timeout,omitempty"`
	// Refresh is how often a digest learned from the registry is checked
	// again, so that revocations arrive, and how often the revocation
	// lists are read.
	Refresh Duration `json:"refresh,omitempty"`
	// RevocationLists are the repository:tag references where the source
	// stagegates publish their signed revocation lists (their
	// revocationList.reference). Every revocation in them is imported,
	// whether or not the image's attestations still show it.
	RevocationLists []string `json:"revocationLists,omitempty"`
	// MaxAge bounds the age of the newest list of each source in the
	// stages with freshSource; older, and promotions imported from the
	// registry do not count there. Default 1h.
	MaxAge Duration `json:"maxAge,omitempty"`
}

// RevocationList publishes this stagegate's revocations, signed, for the
// clusters that follow it through the registry.
type RevocationList struct {
	// Reference is the repository:tag the list is written to.
	Reference string `json:"reference,omitempty"`
	// Every is how often the list is signed again; it is also written
	// after each revocation. Keep it well below the followers' maxAge.
	Every Duration `json:"every,omitempty"`
}

// Defaults of RegistrySource and RevocationList.
const (
	DefaultMaxAge              = time.Hour
	DefaultRevocationListEvery = 5 * time.Minute
)

// Admission is the webhook's listener and the bounds of its work.
type Admission struct {
	// Listen, if set, gives the webhook a listener of its own, apart from
	// the promotion API's: a NetworkPolicy can then let only the API server
	// reach it. Empty serves the webhook on Listen, with the API.
	Listen string `json:"listen,omitempty"`
	// ClientCAFile is the CA of the client certificate the API server
	// presents to webhooks (its AdmissionConfiguration kubeconfig). When
	// set, the webhook's listener requires a certificate signed by it, so
	// that nobody else can send reviews and record break-glass entries
	// under an identity of their choosing. It needs Listen.
	ClientCAFile string `json:"clientCAFile,omitempty"`
	// Timeout bounds one review, registry look-ups included. Keep it below
	// the webhook's timeoutSeconds (default 5), so that the API server
	// gets stagegate's own refusal instead of a bare timeout.
	Timeout Duration `json:"timeout,omitempty"`
	// MaxImages caps the images (containers, init and ephemeral
	// containers, image volumes) of one object; more are refused.
	MaxImages int `json:"maxImages,omitempty"`
	// TagCacheTTL is how long a tag's resolved digest is reused. A tag can
	// move in that window, so keep it short (or pin tags with the mutating
	// webhook, `stagegate manifests --pin-tags`).
	TagCacheTTL Duration `json:"tagCacheTTL,omitempty"`

	// Sources lets the webhook look up the Flux objects a HelmChart or
	// HelmRelease refers to (its HelmRepository, or the OCIRepository or
	// HelmChart of a chartRef), which say what chart it deploys. Without
	// it, such objects are refused: their artifact cannot be known.
	Sources AdmissionSources `json:"sources,omitzero"`
}

// AdmissionSources watches Flux's HelmRepository, HelmChart and
// OCIRepository objects with an informer, so that a review reads them
// from memory, never from the API server.
type AdmissionSources struct {
	Enabled bool `json:"enabled,omitempty"`
	// Kubeconfig is the kubeconfig file of the cluster; empty uses the
	// pod's service account.
	Kubeconfig string `json:"kubeconfig,omitempty"`
}

// Defaults of Admission.
const (
	DefaultAdmissionTimeout = 4 * time.Second
	DefaultMaxImages        = 64
	DefaultTagCacheTTL      = 30 * time.Second
)

// TLS holds the serving certificate and optional client CA for mTLS.
type TLS struct {
	CertFile     string `json:"certFile"`
	KeyFile      string `json:"keyFile"`
	ClientCAFile string `json:"clientCAFile,omitempty"`
}

// Keys locates the signing material.
type Keys struct {
	// Dir holds cosign.key, cosign.pub, log.key and log.pub unless the
	// individual paths are set.
	Dir       string `json:"dir"`
	CosignKey string `json:"cosignKey,omitempty"`
	CosignPub string `json:"cosignPub,omitempty"`
	LogKey    string `json:"logKey,omitempty"`
	LogPub    string `json:"logPub,omitempty"`
	// Password is filled from STAGEGATE_KEY_PASSWORD, never from the file.
	Password []byte `json:"-"`
}

// RateLimit is a token bucket per identity: PerSecond requests a second
// on average, up to Burst at once. A client over it gets 429 and Retry-After.
type RateLimit struct {
	PerSecond float64 `json:"perSecond"`
	Burst     int     `json:"burst"`
}

// Registry is per-registry client settings.
type Registry struct {
	// Host is the registry host[:port] these settings apply to.
	Host string `json:"host"`
	// Insecure allows plain HTTP; it must be explicit.
	Insecure bool `json:"insecure,omitempty"`
	// CAFile is a PEM bundle trusted for this registry.
	CAFile string `json:"caFile,omitempty"`
}

// Ledger holds settings of the ledger file beyond its place in DataDir.
type Ledger struct {
	// CheckpointFile keeps the newest checkpoint serve has published, so
	// that serve refuses to start on an older copy of the ledger (one from
	// before a revocation, say). It must live outside DataDir, on another
	// volume: whoever can replace the ledger must not be able to replace
	// it too. Empty: no guard (the generated deploy sets one).
	CheckpointFile string `json:"checkpointFile,omitempty"`
}

// Config is stagegate's whole configuration.
type Config struct {
	Listen     string     `json:"listen"`
	DataDir    string     `json:"dataDir"`
	TLS        TLS        `json:"tls"`
	Keys       Keys       `json:"keys"`
	TokensFile string     `json:"tokensFile"`
	PolicyDir  string     `json:"policyDir,omitempty"`
	Stages     []Stage    `json:"stages"`
	Registries []Registry `json:"registries,omitempty"`
	// RegistryAllowList makes Registries the only hosts stagegate
	// contacts: references, redirects (blob storage) and token realms
	// alike. It is an explicit switch because registries also lists hosts
	// only for their TLS settings; turning it on must not be a side effect
	// of adding a CA.
	RegistryAllowList bool `json:"registryAllowList,omitempty"`
	// RegistryTimeout bounds each wait for a registry (connecting, each
	// answer, each read of one) and a promotion's tag resolution, so that
	// a registry that never answers gives the pipeline a 504 before the
	// server's write timeout cuts the connection.
	RegistryTimeout Duration `json:"registryTimeout,omitempty"`
	// EvidenceKeys are the public keys (e.g. of build pipelines) whose
	// attestations on an image count as evidence for the promotion policy.
	EvidenceKeys []string `json:"evidenceKeys,omitempty"`
	// RegistrySource imports promotions made by other stagegates.
	RegistrySource RegistrySource `json:"registrySource,omitempty"`
	// RevocationList publishes this stagegate's revocations for them.
	RevocationList RevocationList `json:"revocationList,omitzero"`
	// LogOrigin names the ledger in its checkpoints.
	LogOrigin string `json:"logOrigin"`
	// ResolveTimeout bounds a registry call on the admission path.
	ResolveTimeout Duration `json:"resolveTimeout,omitempty"`
	// Admission bounds each review.
	Admission Admission `json:"admission,omitempty"`
	// RateLimit bounds each identity's requests to the write endpoints.
	RateLimit RateLimit `json:"rateLimit,omitempty"`
	// Ledger guards the ledger file against rollback.
	Ledger Ledger `json:"ledger,omitzero"`
	// ContinuousValidation reports the running pods admission would
	// refuse now.
	ContinuousValidation ContinuousValidation `json:"continuousValidation,omitzero"`
	// UI is the web view.
	UI UI `json:"ui,omitzero"`
	// SecurityGroups may revoke in every stage whose revokeGroups is not
	// set (duties.go).
	SecurityGroups []string `json:"securityGroups,omitempty"`
	// Cluster makes this stagegate a replica of a Raft cluster; nil is a
	// single node (see cluster.go).
	Cluster *Cluster `json:"cluster,omitempty"`
	// Dev turns on the embedded registry and generated material.
	Dev bool `json:"-"`
}

// Default returns the configuration used when nothing else is said.
func Default() *Config {
	no, yes := false, true
	return &Config{
		Listen:    "127.0.0.1:8443",
		DataDir:   "data",
		TLS:       TLS{CertFile: "certs/tls.crt", KeyFile: "certs/tls.key"},
		LogOrigin: "stagegate.dev/ledger",
		Stages: []Stage{
			{Name: "dev", Groups: []string{"pipeline"}, Mode: ModeEnforce, BreakGlass: &yes},
			{Name: "test", Groups: []string{"pipeline"}, Mode: ModeEnforce, BreakGlass: &yes},
			{Name: "stage", Groups: []string{"release"}, Mode: ModeEnforce, BreakGlass: &yes, MinSoak: Duration(time.Hour)},
			{Name: "prod", Groups: []string{"release"}, Mode: ModeEnforce, BreakGlass: &no, MinSoak: Duration(24 * time.Hour)},
		},
		ResolveTimeout: Duration(2 * time.Second),
		Admission: Admission{
			Timeout:     Duration(DefaultAdmissionTimeout),
			MaxImages:   DefaultMaxImages,
			TagCacheTTL: Duration(DefaultTagCacheTTL),
		},
		RateLimit: RateLimit{PerSecond: 50, Burst: 100},
	}
}

// Load reads the YAML or JSON file at path over the defaults. An empty path
// leaves the defaults alone. Unknown fields are errors, so a typo is not
// silently ignored.
func Load(path string) (*Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// encoding/json decodes an array into the existing elements of a
	// slice, so a file's stages would inherit the fields of the default
	// stage at the same position (its soak, its break-glass). The file's
	// list replaces the defaults whole instead.
	defaults := c.Stages
	c.Stages = nil
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if c.Stages == nil {
		c.Stages = defaults
	}
	return c, nil
}

var stageName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate checks the whole configuration and fills in derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen must be set"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir must be set"))
	}
	if len(c.Stages) == 0 {
		errs = append(errs, errors.New("at least one stage is required"))
	}
	seen := map[string]bool{}
	for i := range c.Stages {
		s := &c.Stages[i]
		if !stageName.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("stage %q: name must be a DNS label (lowercase letters, digits, '-')", s.Name))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("stage %q: defined twice", s.Name))
		}
		seen[s.Name] = true
		if s.Mode == "" {
			s.Mode = ModeEnforce
		}
		if !slices.Contains([]string{ModeEnforce, ModeWarn, ModeAudit}, s.Mode) {
			errs = append(errs, fmt.Errorf("stage %q: mode %q must be enforce, warn or audit", s.Name, s.Mode))
		}
		if s.MinSoak < 0 {
			errs = append(errs, fmt.Errorf("stage %q: minSoak must not be negative", s.Name))
		}
	}
	// Keys and tokens live in the data directory unless said otherwise.
	if c.Keys.Dir == "" {
		c.Keys.Dir = filepath.Join(c.DataDir, "keys")
	}
	if c.TokensFile == "" {
		c.TokensFile = filepath.Join(c.DataDir, "tokens.yaml")
	}
	c.fillKeyPaths()
	if c.RegistrySource.Enabled && len(c.RegistrySource.TrustedKeys) == 0 {
		errs = append(errs, errors.New("registrySource.trustedKeys: at least one key is required when enabled"))
	}
	if c.RegistrySource.Timeout <= 0 {
		c.RegistrySource.Timeout = Duration(2 * time.Second)
	}
	if c.RegistrySource.Refresh <= 0 {
		c.RegistrySource.Refresh = Duration(30 * time.Second)
	}
	if c.RegistrySource.MaxAge <= 0 {
		c.RegistrySource.MaxAge = Duration(DefaultMaxAge)
	}
	if c.RevocationList.Every <= 0 {
		c.RevocationList.Every = Duration(DefaultRevocationListEvery)
	}
	errs = append(errs, c.validateFreshness()...)
	errs = append(errs, c.UI.validate()...)
	for _, s := range c.Stages {
		if len(s.RequiredEvidence) > 0 && len(c.EvidenceKeys) == 0 {
			errs = append(errs, fmt.Errorf("stage %q: requiredEvidence needs evidenceKeys to verify it", s.Name))
		}
		if s.Tag != "" && strings.ContainsAny(strings.TrimPrefix(s.Tag, "{{repository}}:"), ":/@") {
			errs = append(errs, fmt.Errorf("stage %q: tag %q must be a tag name such as \"{{stage}}\"", s.Name, s.Tag))
		}
	}
	if c.ResolveTimeout <= 0 {
		c.ResolveTimeout = Duration(2 * time.Second)
	}
	errs = append(errs, c.validateRegistries()...)
	errs = append(errs, c.validateDuties()...)
	errs = append(errs, c.validateApprovals()...)
	errs = append(errs, c.validateWindows()...)
	errs = append(errs, c.Admission.validate()...)
	errs = append(errs, c.ContinuousValidation.validate()...)
	if c.Cluster != nil {
		errs = append(errs, c.Cluster.validate(c.DataDir)...)
	}
	errs = append(errs, c.validateOnViolation()...)
	if c.Admission.ClientCAFile != "" && (c.Admission.Listen == "" || c.Admission.Listen == c.Listen) {
		errs = append(errs, errors.New("admission.clientCAFile needs admission.listen, a listener apart from listen: the promotion API's clients have no API server certificate"))
	}
	if c.RateLimit.PerSecond <= 0 || c.RateLimit.Burst < 1 {
		errs = append(errs, fmt.Errorf("rateLimit: perSecond must be positive and burst at least 1, got %v and %d",
			c.RateLimit.PerSecond, c.RateLimit.Burst))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// validate fills zero fields with the defaults and checks the bounds: the
// API server waits at most 30 s for a webhook.
func (a *Admission) validate() []error {
	var errs []error
	if a.Timeout == 0 {
		a.Timeout = Duration(DefaultAdmissionTimeout)
	}
	if a.MaxImages == 0 {
		a.MaxImages = DefaultMaxImages
	}
	if a.TagCacheTTL == 0 {
		a.TagCacheTTL = Duration(DefaultTagCacheTTL)
	}
	if a.Timeout < 0 || a.Timeout.Std() >= 30*time.Second {
		errs = append(errs, fmt.Errorf("admission.timeout %s must be positive and below 30s, the API server's limit for a webhook", a.Timeout.Std()))
	}
	if a.MaxImages < 0 {
		errs = append(errs, fmt.Errorf("admission.maxImages %d must be positive", a.MaxImages))
	}
	if a.TagCacheTTL < 0 || a.TagCacheTTL.Std() > time.Hour {
		errs = append(errs, fmt.Errorf("admission.tagCacheTTL %s must be between 0s and 1h; a cached tag can have moved", a.TagCacheTTL.Std()))
	}
	if a.Sources.Enabled && a.Sources.Kubeconfig != "" {
		if _, err := os.Stat(a.Sources.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("admission.sources.kubeconfig: %w", err))
		}
	}
	return errs
}

func (c *Config) fillKeyPaths() {
	set := func(p *string, name string) {
		if *p == "" && c.Keys.Dir != "" {
			*p = filepath.Join(c.Keys.Dir, name)
		}
	}
	set(&c.Keys.CosignKey, "cosign.key")
	set(&c.Keys.CosignPub, "cosign.pub")
	set(&c.Keys.LogKey, "log.key")
	set(&c.Keys.LogPub, "log.pub")
}

// StageTag is the tag a promotion to stage moves, or "" for none.
func (s Stage) StageTag() string {
	if s.Tag == "" {
		return ""
	}
	t := strings.TrimPrefix(s.Tag, "{{repository}}:")
	return strings.ReplaceAll(t, "{{stage}}", s.Name)
}

// TargetRepository is where a promotion to s copies repository, or "".
func (s Stage) TargetRepository(repository string) string {
	if s.Target == "" {
		return ""
	}
	path := repository
	if i := strings.IndexByte(repository, '/'); i > 0 {
		if host := repository[:i]; strings.ContainsAny(host, ".:") || host == "localhost" {
			path = repository[i+1:]
		}
	}
	return strings.TrimRight(s.Target, "/") + "/" + path
}

// FreshStages are the stages that require a fresh registry source
// (Stage.FreshSource; by default the last).
func (c *Config) FreshStages() []string {
	var out []string
	for i, s := range c.Stages {
		if boolOr(s.FreshSource, i == len(c.Stages)-1) {
			out = append(out, s.Name)
		}
	}
	return out
}

// validateFreshness refuses a follower that could never be fresh: without
// a list to read, its fresh stages would refuse every imported promotion,
// and the operator should hear that at start, not from each pod.
func (c *Config) validateFreshness() []error {
	var errs []error
	rs := c.RegistrySource
	if fresh := c.FreshStages(); rs.Enabled && len(fresh) > 0 && len(rs.RevocationLists) == 0 {
		errs = append(errs, fmt.Errorf("registrySource: stages %s require a fresh registry source (freshSource, default: the last stage), and registrySource.revocationLists is empty: "+
			"set it to the revocationList.reference of the stagegate you follow, or set freshSource: false on those stages to admit its promotions without knowing whether they were revoked since",
			strings.Join(fresh, ", ")))
	}
	for _, ref := range append(slices.Clone(rs.RevocationLists), c.RevocationList.Reference) {
		if ref != "" && !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
			errs = append(errs, fmt.Errorf("revocation list %q: want repository:tag", ref))
		}
	}
	if rs.Enabled && len(rs.RevocationLists) > 0 && rs.MaxAge.Std() <= rs.Refresh.Std() {
		errs = append(errs, fmt.Errorf("registrySource.maxAge %s must exceed registrySource.refresh %s, how often the lists are read", rs.MaxAge.Std(), rs.Refresh.Std()))
	}
	return errs
}

// LedgerPath is where the bbolt file lives.
func (c *Config) LedgerPath() string { return filepath.Join(c.DataDir, "ledger.db") }

// StageNames returns the stages in pipeline order.
func (c *Config) StageNames() []string {
	names := make([]string, len(c.Stages))
	for i, s := range c.Stages {
		names[i] = s.Name
	}
	return names
}

// Stage returns the named stage.
func (c *Config) Stage(name string) (Stage, bool) {
	for _, s := range c.Stages {
		if s.Name == name {
			return s, true
		}
	}
	return Stage{}, false
}

// PolicyData is what policies see as data.stagegate.config.
func (c *Config) PolicyData() map[string]any {
	stages := map[string]any{}
	required := map[string]any{}
	last := len(c.Stages) - 1
	for i, s := range c.Stages {
		groups := make([]any, len(s.Groups))
		for j, g := range s.Groups {
			groups[j] = g
		}
		stages[s.Name] = map[string]any{
			"groups":         groups,
			"minSoakSeconds": int64(time.Duration(s.MinSoak) / time.Second),
			"mode":           s.Mode,
			"breakGlass":     boolOr(s.BreakGlass, i != last),
			"allowTags":      boolOr(s.AllowTags, i != last),
		}
		c.addDuties(stages[s.Name].(map[string]any), s)
		addApprovals(stages[s.Name].(map[string]any), s)
		if len(s.RequiredEvidence) > 0 {
			req := make([]any, len(s.RequiredEvidence))
			for j, r := range s.RequiredEvidence {
				req[j] = r
			}
			required[s.Name] = req
		}
	}
	order := make([]any, len(c.Stages))
	for i, s := range c.Stages {
		order[i] = s.Name
	}
	return map[string]any{"stages": order, "stage": stages, "requiredEvidence": required}
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// Duration is a time.Duration written as "1h30m" in the file.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON accepts "90s", "1h" and the like.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return fmt.Errorf("duration must be a string like \"1h\", got %s", s)
	}
	v, err := time.ParseDuration(s[1 : len(s)-1])
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Bounds of RegistryTimeout: below the promotion API's write timeout (30 s),
// so that the answer is stagegate's 504 and not a cut connection.
const (
	DefaultRegistryTimeout = 10 * time.Second
	maxRegistryTimeout     = 25 * time.Second
)

// validateRegistries checks Registries, RegistryAllowList and
// RegistryTimeout, and fills in the default timeout.
func (c *Config) validateRegistries() []error {
	var errs []error
	if c.RegistryTimeout == 0 {
		c.RegistryTimeout = Duration(DefaultRegistryTimeout)
	}
	if c.RegistryTimeout < 0 || c.RegistryTimeout.Std() > maxRegistryTimeout {
		errs = append(errs, fmt.Errorf("registryTimeout %s must be positive and at most %s, below the API's write timeout of 30s", c.RegistryTimeout.Std(), maxRegistryTimeout))
	}
	for _, r := range c.Registries {
		if r.Host == "" || strings.ContainsAny(r.Host, "/@ ") {
			errs = append(errs, fmt.Errorf("registries: host %q must be host[:port], without a scheme or path", r.Host))
		}
	}
	if c.RegistryAllowList && len(c.Registries) == 0 {
		errs = append(errs, errors.New("registryAllowList needs the allowed hosts in registries"))
	}
	return errs
}
