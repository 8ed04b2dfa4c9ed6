package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// stageView is one stage as GET /v1/stages answers it
// (promotion.StageView).
type stageView struct {
	Name                 string     `json:"name"`
	Order                int        `json:"order"`
	Open                 bool       `json:"open"`
	NextChange           *time.Time `json:"nextChange"`
	ClosedBy             string     `json:"closedBy"`
	Groups               []string   `json:"groups"`
	Schedule             []string   `json:"schedule"`
	FreezeOverrideGroups []string   `json:"freezeOverrideGroups"`
	ApprovalRule         *struct {
		Required         int      `json:"required"`
		Groups           []string `json:"groups"`
		ExcludeRequester bool     `json:"excludeRequester"`
		Expires          string   `json:"expires"`
	} `json:"approvalRule"`
	Pending     []uint64 `json:"pending"`
	PendingMore bool     `json:"pendingMore"`
}

// stagesTable shows a stage a row: who may promote, what approvals it
// needs, its windows, whether it is open and until when, and its pending
// requests (ids for `stagegate approve`).
func stagesTable(list []stageView) func(io.Writer) error {
	return func(w io.Writer) error {
		fmt.Fprintln(w, "ORDER\tSTAGE\tGROUPS\tAPPROVALS\tWINDOWS\tOPEN\tNEXT CHANGE\tPENDING")
		for _, v := range list {
			open := "yes"
			switch {
			case !v.Open && v.ClosedBy != "":
				open = "no (" + v.ClosedBy + ")"
			case !v.Open:
				open = "no (outside its allowed windows)"
			}
			next := "-"
			if v.NextChange != nil {
				next = when(*v.NextChange)
			}
			approvals := "-"
			if r := v.ApprovalRule; r != nil {
				approvals = fmt.Sprintf("%d of %s, expires %s", r.Required, strings.Join(r.Groups, ","), r.Expires)
				if r.ExcludeRequester {
					approvals += ", not the requester"
				}
			}
			sched := strings.Join(v.Schedule, "; ")
			if len(v.FreezeOverrideGroups) > 0 {
				sched += "; override: " + strings.Join(v.FreezeOverrideGroups, ",")
			}
			var pending []string
			for _, id := range v.Pending {
				pending = append(pending, strconv.FormatUint(id, 10))
			}
			if v.PendingMore {
				pending = append(pending, "…")
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Order, v.Name, dash(strings.Join(v.Groups, ",")), approvals,
				dash(sched), open, next, dash(strings.Join(pending, ",")))
		}
		return nil
	}
}

func newStagesCommand(s Streams) *cobra.Command {
	cf := clientFlags{lookup: s.LookupEnv}
	var output string
	cmd := &cobra.Command{
		Use:   "stages",
		Short: "Show each stage: who may promote, approvals, windows, whether it is open now, and its pending requests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			_, out, err := c.do(cmd.Context(), http.MethodGet, "/v1/stages", nil)
			if err != nil {
				return err
			}
			var a struct {
				Stages []stageView `json:"stages"`
			}
			if err := json.Unmarshal(out, &a); err != nil {
				return fmt.Errorf("unexpected answer: %w", err)
			}
			return printAnswer(s, output, out, stagesTable(a.Stages))
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", "the answer: "+outputHelp)
	return cmd
}
