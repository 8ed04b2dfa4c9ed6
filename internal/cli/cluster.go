package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
)

func newClusterCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect a replicated stagegate",
	}
	cmd.AddCommand(newClusterStatusCommand(s), newClusterCheckAdoptCommand(s))
	return cmd
}

func newClusterCheckAdoptCommand(s Streams) *cobra.Command {
	var file string
	cf := configFlags{}
	cmd := &cobra.Command{
		Use:   "check-adopt --config CLUSTER_CONFIG [--ledger FILE]",
		Short: "Before upgrading from one replica: check, offline, that the adopting member will adopt this ledger",
		Long: "Run it before the upgrade (README, \"Upgrading from one replica\"), with serve stopped, on the ledger that becomes\n" +
			"the adopting member's and the cluster config the members will run. It reads only. It checks what that\n" +
			"member checks at its first start (every entry, the tree, the checkpoint and every attestation, with the\n" +
			"config's keys), and what would go wrong there without an error: no cluster.adopt, a missing or empty\n" +
			"ledger, Raft state already in cluster.dataDir. The config's node ID defaults to the adopting member.\n" +
			"That the other members start empty is checked by the adopting member itself when it starts.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// One config serves every member, its node ID from the
			// environment: the check is the adopting member's.
			// A node ID in the file stays: another member's config is
			// refused, not checked as the adopter's.
			fallback := ""
			if raw, err := config.Load(cf.file); err == nil && raw.Cluster != nil && raw.Cluster.NodeID == "" {
				fallback = raw.Cluster.Adopt
			}
			env := s.LookupEnv
			if env == nil {
				env = os.LookupEnv
			}
			cf.lookup = func(k string) (string, bool) {
				if v, ok := env(k); ok || k != config.ClusterNodeIDEnv || fallback == "" {
					return v, ok
				}
				return fallback, true
			}
			cfg, err := cf.load()
			if err != nil {
				return err
			}
			res, err := app.CheckAdopt(cfg, file)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "member %s can adopt %s: %d entries verify with this config's keys (every entry, the tree, the checkpoint, every attestation), and %s holds no Raft state.\n"+
				"Start every other member with an empty data directory; %s checks that when it starts.\n", res.Member, res.Ledger, res.Entries, res.RaftDir, res.Member)
			return nil
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVar(&file, "ledger", "", "ledger file to adopt (default <data-dir>/ledger.db)")
	return cmd
}

func newClusterStatusCommand(s Streams) *cobra.Command {
	cf := clientFlags{lookup: s.LookupEnv}
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each member's role, term, commit and applied index, and last contact with the leader",
		Long: "Asks the server (any member) for GET /v1/cluster: it answers for itself and asks every other member over the peer port. " +
			"A member it cannot reach is shown as unreachable, with the error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			_, out, err := c.do(cmd.Context(), http.MethodGet, "/v1/cluster", nil)
			if err != nil {
				return err
			}
			return printAnswer(s, output, out, clusterTable(out))
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", outputHelp)
	return cmd
}

// clusterView is GET /v1/cluster as the table reads it.
type clusterView struct {
	Self    string `json:"self"`
	Members []struct {
		ID           string    `json:"id"`
		Address      string    `json:"address"`
		NonVoter     bool      `json:"nonVoter"`
		Role         string    `json:"role"`
		Term         uint64    `json:"term"`
		LeaderID     string    `json:"leaderID"`
		CommitIndex  uint64    `json:"commitIndex"`
		AppliedIndex uint64    `json:"appliedIndex"`
		LastContact  time.Time `json:"lastContact"`
		LedgerSize   uint64    `json:"ledgerSize"`
		Error        string    `json:"error"`
	} `json:"members"`
}

// clusterTable is one row per member; the one that answered is marked.
func clusterTable(raw []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		var v clusterView
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("unexpected answer: %w", err)
		}
		fmt.Fprintln(w, "NODE\tROLE\tVOTER\tTERM\tCOMMIT\tAPPLIED\tENTRIES\tLAST CONTACT\tERROR")
		for _, m := range v.Members {
			id := m.ID
			if id == v.Self {
				id += " (*)"
			}
			voter := "yes"
			if m.NonVoter {
				voter = "no"
			}
			if m.Error != "" {
				fmt.Fprintf(w, "%s\t%s\t%s\t-\t-\t-\t-\t-\t%s\n", id, m.Role, voter, oneLine(m.Error, 80))
				continue
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t-\n", id, m.Role, voter, m.Term, m.CommitIndex, m.AppliedIndex, m.LedgerSize, when(m.LastContact))
		}
		return nil
	}
}
