package config

import "os"

// The environment variables stagegate reads. FromEnv is the only code that
// reads them: the rest of stagegate gets an Env, and a test passes its own
// lookup instead of changing the process's environment.
const (
	// PasswordEnv holds the cosign key password. It is never read from the
	// file, so that it cannot be committed.
	PasswordEnv = "STAGEGATE_KEY_PASSWORD"
	// TokenEnv holds the client commands' bearer token. It is never a
	// flag: a flag would show in ps and in the shell's history.
	TokenEnv = "STAGEGATE_TOKEN"
	// ServerEnv is the client commands' --server when the flag is not
	// given.
	ServerEnv = "STAGEGATE_SERVER"
	// CAFileEnv is the client commands' --ca-file when the flag is not
	// given.
	CAFileEnv = "STAGEGATE_CA_FILE"
	// GOGCEnv and GOMemLimitEnv are the Go runtime's own: serve tunes the
	// collector only when the operator has set neither.
	GOGCEnv       = "GOGC"
	GOMemLimitEnv = "GOMEMLIMIT"
	// ClusterNodeIDEnv overrides cluster.nodeID: a StatefulSet gives every
	// pod the same config and its own name.
	ClusterNodeIDEnv = "STAGEGATE_CLUSTER_NODE_ID"
)

// LookupFunc reads one environment variable, as os.LookupEnv does.
type LookupFunc func(key string) (string, bool)

// Env is what stagegate takes from its environment.
type Env struct {
	// KeyPassword is $STAGEGATE_KEY_PASSWORD, empty (not nil) when unset,
	// as the key files of dev mode are encrypted with the empty password.
	KeyPassword []byte
	// Token is $STAGEGATE_TOKEN.
	Token string
	// Server and CAFile are $STAGEGATE_SERVER and $STAGEGATE_CA_FILE, ""
	// when unset or empty: an empty variable leaves the default alone.
	Server, CAFile string
	// GOGCSet and GOMemLimitSet say whether $GOGC and $GOMEMLIMIT are set
	// at all (to anything, the empty string included).
	GOGCSet, GOMemLimitSet bool
	// ClusterNodeID is $STAGEGATE_CLUSTER_NODE_ID, "" when unset.
	ClusterNodeID string
}

// FromEnv reads the environment through lookup; nil reads the process's.
func FromEnv(lookup LookupFunc) Env {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	get := func(k string) string {
		v, _ := lookup(k)
		return v
	}
	set := func(k string) bool {
		_, ok := lookup(k)
		return ok
	}
	return Env{
		KeyPassword:   []byte(get(PasswordEnv)),
		Token:         get(TokenEnv),
		Server:        get(ServerEnv),
		CAFile:        get(CAFileEnv),
		GOGCSet:       set(GOGCEnv),
		GOMemLimitSet: set(GOMemLimitEnv),
		ClusterNodeID: get(ClusterNodeIDEnv),
	}
}

// Apply puts what the server takes from the environment into c: the key
// password, and the cluster node ID when the config has a cluster. It
// runs after the file and the flags, before Validate.
func (e Env) Apply(c *Config) {
	c.Keys.Password = e.KeyPassword
	if c.Cluster != nil && e.ClusterNodeID != "" {
		c.Cluster.NodeID = e.ClusterNodeID
	}
}
