package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

func newClusterCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect a replicated stagegate",
	}
	cmd.AddCommand(newClusterStatusCommand(s))
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
