package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Cluster runs this stagegate as one replica of a Raft cluster: every
// replica keeps its own ledger as the state machine, the leader proposes
// every write, and followers forward writes to it over the peer port.
// Absent, stagegate is a single node without Raft.
type Cluster struct {
	// NodeID is this replica's member ID; $STAGEGATE_CLUSTER_NODE_ID
	// overrides it, so that one config serves every pod of a StatefulSet.
	NodeID string `json:"nodeID"`
	// Listen is the peer port, Raft and write forwarding on one mutual TLS
	// listener.
	Listen string `json:"listen"`
	// DataDir holds Raft's log, stable store and snapshots. Default: raft
	// in the top-level dataDir.
	DataDir string `json:"dataDir,omitempty"`
	// Members is the static member list, the same on every replica.
	Members []Member `json:"members"`
	// TLS is the peer certificate (both ends of every peer connection
	// present it) and the CA that signs every member's.
	TLS PeerTLS `json:"tls"`
	// StaleAfter is how long a replica may have lost contact with any
	// leader before it reports not ready and admission fails closed in
	// its stages. Default 10s.
	StaleAfter Duration `json:"staleAfter,omitempty"`
	// RevocationWait bounds how long a revocation's answer waits for
	// every voter in contact to apply it. Default 5s.
	RevocationWait Duration `json:"revocationWait,omitempty"`
	// Adopt names the member whose existing single-node ledger the
	// cluster starts from: the upgrade from one replica. On its first
	// start (no Raft state) that member verifies its ledger in full and
	// makes it Raft's first snapshot; every other member starts empty and
	// joins without bootstrapping, so that only that ledger can become the
	// cluster's. Members with Raft state ignore it. Empty: a new cluster.
	Adopt string `json:"adopt,omitempty"`
}

// Member is one replica of the member list.
type Member struct {
	ID string `json:"id"`
	// Address is the host:port the other members dial (its peer port).
	Address string `json:"address"`
	// NonVoter replicates the ledger and serves admission, but does not
	// vote nor count for a quorum.
	NonVoter bool `json:"nonVoter,omitempty"`
}

// PeerTLS locates the peer certificate.
type PeerTLS struct {
	CAFile   string `json:"caFile"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// Defaults of Cluster.
const (
	DefaultStaleAfter     = 10 * time.Second
	DefaultRevocationWait = 5 * time.Second
)

// validate fills in the defaults and checks the section; dataDir is the
// top-level one.
func (c *Cluster) validate(dataDir string) []error {
	var errs []error
	if c.DataDir == "" {
		c.DataDir = filepath.Join(dataDir, "raft")
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = Duration(DefaultStaleAfter)
	}
	if c.RevocationWait == 0 {
		c.RevocationWait = Duration(DefaultRevocationWait)
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("cluster.listen must be set (the peer port)"))
	}
	if c.StaleAfter.Std() < time.Second {
		errs = append(errs, fmt.Errorf("cluster.staleAfter %s must be at least 1s: Raft's own heartbeat timeout is 1s", c.StaleAfter.Std()))
	}
	if c.RevocationWait <= 0 || c.RevocationWait.Std() > time.Minute {
		errs = append(errs, fmt.Errorf("cluster.revocationWait %s must be between 0s and 1m", c.RevocationWait.Std()))
	}
	seen := map[string]bool{}
	addrs := map[string]bool{}
	voters := 0
	for i, m := range c.Members {
		switch {
		case m.ID == "":
			errs = append(errs, fmt.Errorf("cluster.members[%d]: id must be set", i))
		case !stageName.MatchString(m.ID):
			errs = append(errs, fmt.Errorf("cluster.members[%d]: id %q must be a DNS label (lowercase letters, digits, '-'), as a StatefulSet's pod name", i, m.ID))
		case seen[m.ID]:
			errs = append(errs, fmt.Errorf("cluster.members[%d]: id %q is listed twice", i, m.ID))
		}
		seen[m.ID] = true
		if m.Address == "" {
			errs = append(errs, fmt.Errorf("cluster.members[%d] (%s): address must be set (host:port of its peer port)", i, m.ID))
		} else if addrs[m.Address] {
			errs = append(errs, fmt.Errorf("cluster.members[%d] (%s): address %s is listed twice", i, m.ID, m.Address))
		}
		addrs[m.Address] = true
		if !m.NonVoter {
			voters++
		}
	}
	if voters == 0 {
		errs = append(errs, errors.New("cluster.members: at least one member must be a voter"))
	}
	if c.Adopt != "" {
		var voter, listed bool
		for _, m := range c.Members {
			if m.ID == c.Adopt {
				listed, voter = true, !m.NonVoter
			}
		}
		switch {
		case !listed:
			errs = append(errs, fmt.Errorf("cluster.adopt %q is not in cluster.members", c.Adopt))
		case !voter:
			errs = append(errs, fmt.Errorf("cluster.adopt %q is a non-voter: the member that adopts the ledger must be a voter, it leads the cluster's first election", c.Adopt))
		}
	}
	if c.NodeID == "" {
		errs = append(errs, fmt.Errorf("cluster.nodeID must be set (or $%s)", ClusterNodeIDEnv))
	} else if !seen[c.NodeID] {
		errs = append(errs, fmt.Errorf("cluster.nodeID %q is not in cluster.members", c.NodeID))
	}
	for _, f := range []struct{ name, path string }{
		{"caFile", c.TLS.CAFile}, {"certFile", c.TLS.CertFile}, {"keyFile", c.TLS.KeyFile},
	} {
		if f.path == "" {
			errs = append(errs, fmt.Errorf("cluster.tls.%s must be set: peer traffic is mutual TLS", f.name))
		} else if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("cluster.tls.%s: %w", f.name, err))
		}
	}
	return errs
}

// Self is this replica's entry of the member list.
func (c *Cluster) Self() Member {
	for _, m := range c.Members {
		if m.ID == c.NodeID {
			return m
		}
	}
	return Member{}
}
