package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stagegate/stagegate/internal/ledger"
)

// requestView is a promotion request as the API answers it
// (promotion.RequestView).
type requestView struct {
	ID         uint64 `json:"id"`
	State      string `json:"state"`
	Stage      string `json:"stage"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Requester  struct {
		Subject string   `json:"subject"`
		Groups  []string `json:"groups"`
	} `json:"requester"`
	Reason    string            `json:"reason"`
	Time      time.Time         `json:"time"`
	Expires   time.Time         `json:"expires"`
	Required  int               `json:"required"`
	Needed    int               `json:"needed"`
	Approvals []ledger.Approval `json:"approvals"`
	Rejection *ledger.Approval  `json:"rejection"`
	Promotion *uint64           `json:"promotion"`
	Waits     string            `json:"waits"`
	// FreezeOverride: an emergency promotion asked during a freeze, which
	// needs an approval from FreezeGroups while the stage is closed.
	FreezeOverride   bool     `json:"freezeOverride"`
	FreezeGroups     []string `json:"freezeGroups"`
	FreezeApprovedBy string   `json:"freezeApprovedBy"`
}

// freezeNote says, of an emergency request, who approves its freeze
// override ("" for any other request).
func (v requestView) freezeNote() string {
	switch {
	case !v.FreezeOverride:
		return ""
	case v.FreezeApprovedBy != "":
		return "; an emergency promotion during a freeze, approved by " + v.FreezeApprovedBy
	}
	return "; an emergency promotion during a freeze: while the stage is closed it needs an approval from " + strings.Join(v.FreezeGroups, ", ")
}

func (v requestView) summary() string {
	switch {
	case v.State == "pending" && v.Waits != "":
		return fmt.Sprintf("request %d to promote %s@%s to %s has its %d approvals and %s; it completes then (expires %s)",
			v.ID, v.Repository, v.Digest, v.Stage, len(v.Approvals), v.Waits, when(v.Expires))
	case v.State == "pending":
		return fmt.Sprintf("request %d to promote %s@%s to %s is pending: %d of %d approvals, %d more needed%s (expires %s)",
			v.ID, v.Repository, v.Digest, v.Stage, len(v.Approvals), v.Required, v.Needed, v.freezeNote(), when(v.Expires))
	case v.State == "rejected" && v.Rejection != nil:
		return fmt.Sprintf("request %d was rejected by %s: %s", v.ID, v.Rejection.Subject, v.Rejection.Reason)
	case v.State == "rejected":
		// An answer without the rejection (an older server): say no more
		// than is known, rather than "rejected by : ".
		return fmt.Sprintf("request %d was rejected", v.ID)
	case v.State == "expired" && !v.Expires.IsZero():
		return fmt.Sprintf("request %d expired at %s with %d of %d approvals; ask again", v.ID, when(v.Expires), len(v.Approvals), v.Required)
	case v.State == "approved" && v.Promotion != nil:
		return fmt.Sprintf("request %d is approved: promoted %s@%s to %s (ledger entry %d)", v.ID, v.Repository, v.Digest, v.Stage, *v.Promotion)
	default:
		return fmt.Sprintf("request %d is %s", v.ID, v.State)
	}
}

// requestsTable shows a list of requests, or one.
func requestsTable(list []requestView) func(io.Writer) error {
	return func(w io.Writer) error {
		fmt.Fprintln(w, "ID\tSTATE\tSTAGE\tDIGEST\tREQUESTER\tAPPROVALS\tEXPIRES")
		for _, v := range list {
			var by []string
			for _, a := range v.Approvals {
				by = append(by, a.Subject)
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d/%d %s\t%s\n", v.ID, v.State, v.Stage, shortDigest(v.Digest), v.Requester.Subject,
				len(v.Approvals), v.Required, strings.Join(by, ","), when(v.Expires))
		}
		return nil
	}
}

func (c *apiClient) request(ctx context.Context, id uint64) (requestView, error) {
	_, out, err := c.do(ctx, http.MethodGet, "/v1/requests/"+strconv.FormatUint(id, 10), nil)
	if err != nil {
		return requestView{}, err
	}
	var a struct {
		Request requestView `json:"request"`
	}
	if err := json.Unmarshal(out, &a); err != nil {
		return requestView{}, fmt.Errorf("unexpected answer: %w", err)
	}
	return a.Request, nil
}

// waitRequest polls request id every interval until it is no longer
// pending, telling w of each new approval, and returns its last view.
func waitRequest(ctx context.Context, c *apiClient, v requestView, interval time.Duration, w io.Writer) (requestView, error) {
	seen := len(v.Approvals)
	for v.State == "pending" {
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("still waiting for request %d: %w", v.ID, ctx.Err())
		case <-time.After(interval):
		}
		nv, err := c.request(ctx, v.ID)
		if err != nil {
			return v, err
		}
		for _, a := range nv.Approvals[min(seen, len(nv.Approvals)):] {
			fmt.Fprintf(w, "approved by %s (%s): %s; %d more needed\n", a.Subject, strings.Join(a.Groups, ","), a.Reason, nv.Needed)
		}
		seen, v = len(nv.Approvals), nv
	}
	return v, nil
}

func newRequestsCommand(s Streams) *cobra.Command {
	cf := clientFlags{lookup: s.LookupEnv}
	var stage, state, output string
	var start, limit uint64
	cmd := &cobra.Command{
		Use:   "requests --stage STAGE [--state pending]",
		Short: "List the promotion requests of a stage with approvals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := url.Values{"stage": {stage}}
			if state != "" {
				q.Set("state", state)
			}
			if cmd.Flags().Changed("start") {
				q.Set("start", strconv.FormatUint(start, 10))
			}
			if cmd.Flags().Changed("limit") {
				q.Set("limit", strconv.FormatUint(limit, 10))
			}
			_, out, err := c.do(cmd.Context(), http.MethodGet, "/v1/requests?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			var a struct {
				Requests []requestView `json:"requests"`
				Next     *uint64       `json:"next"`
			}
			if err := json.Unmarshal(out, &a); err != nil {
				return fmt.Errorf("unexpected answer: %w", err)
			}
			if a.Next != nil {
				fmt.Fprintf(s.Err, "more requests follow: add --start %d\n", *a.Next)
			}
			return printAnswer(s, output, out, requestsTable(a.Requests))
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVar(&stage, "stage", "", "stage (required)")
	cmd.Flags().StringVar(&state, "state", "", "only requests in this state: pending, approved, rejected or expired")
	cmd.Flags().Uint64Var(&start, "start", 0, "first ledger index of the page")
	cmd.Flags().Uint64Var(&limit, "limit", 100, "requests per page (at most 1000)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "the answer: "+outputHelp)
	_ = cmd.MarkFlagRequired("stage")
	return cmd
}

// newAnswerCommand is `approve` or `reject`.
func newAnswerCommand(s Streams, verb, path string) *cobra.Command {
	cf := clientFlags{lookup: s.LookupEnv}
	var reason, output string
	cmd := &cobra.Command{
		Use:   verb + " ID --reason TEXT",
		Short: map[string]string{"approve": "Approve a pending promotion request; the last approval completes it", "reject": "Reject a pending promotion request (its requester may withdraw it)"}[verb],
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 63)
			if err != nil {
				return fmt.Errorf("ID must be the request's number, as `stagegate requests` lists it")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			status, out, err := c.do(cmd.Context(), http.MethodPost, "/v1/requests/"+args[0]+"/"+path, map[string]any{"reason": reason})
			if err != nil {
				return fmt.Errorf("%s refused: %w", verb, err)
			}
			var a struct {
				Request requestView    `json:"request"`
				Receipt ledger.Receipt `json:"receipt"`
			}
			if err := json.Unmarshal(out, &a); err != nil {
				return fmt.Errorf("unexpected answer: %w", err)
			}
			switch {
			case status == http.StatusOK:
				fmt.Fprintf(s.Err, "you already approved request %d; %s\n", id, a.Request.summary())
			case a.Receipt.Entry.Kind == ledger.KindPromotion:
				fmt.Fprintf(s.Err, "request %d approved: promoted %s@%s to %s (ledger entry %d)\n", id, a.Request.Repository, a.Request.Digest,
					a.Request.Stage, a.Receipt.Entry.Index)
			default:
				fmt.Fprintln(s.Err, a.Request.summary())
			}
			return printAnswer(s, output, out, requestsTable([]requestView{a.Request}))
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVar(&reason, "reason", "", "why; recorded and signed (required)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "the answer: "+outputHelp)
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// awaitApprovals handles a 202: the promotion became a pending request.
// Without wait it says so and prints the answer (status stays 202). With
// wait it polls until the request is decided: approved, the promotion is
// asked for again, which answers with the receipt (200); rejected or
// expired, an error.
func awaitApprovals(ctx context.Context, s Streams, c *apiClient, out []byte, body map[string]any, wait bool, every time.Duration, output string) (int, []byte, error) {
	var a struct {
		Request requestView `json:"request"`
	}
	if err := json.Unmarshal(out, &a); err != nil {
		return 0, nil, fmt.Errorf("unexpected answer: %w", err)
	}
	fmt.Fprintln(s.Err, a.Request.summary())
	if !wait {
		fmt.Fprintf(s.Err, "approve with `stagegate approve %d --reason ...`; wait with --wait\n", a.Request.ID)
		return http.StatusAccepted, out, printAnswer(s, output, out, requestsTable([]requestView{a.Request}))
	}
	v, err := waitRequest(ctx, c, a.Request, every, s.Err)
	if err != nil {
		return 0, nil, err
	}
	if v.State != "approved" {
		return 0, nil, fmt.Errorf("promotion not made: %s", v.summary())
	}
	status, receipt, err := c.do(ctx, http.MethodPost, "/v1/promotions", body)
	if err != nil {
		return 0, nil, fmt.Errorf("request %d was approved, but fetching the receipt failed: %w", v.ID, err)
	}
	return status, receipt, nil
}
