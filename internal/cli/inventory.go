package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// runningView is where digests run now, as the image status and the
// revocation answer carry it (internal/api/inventory.go). A server without
// continuous validation's answers sends none of it: Running is nil and
// RunningUnknown empty.
type runningView struct {
	Running        []runningPod `json:"running"`
	RunningTotal   int          `json:"runningTotal"`
	RunningUnknown string       `json:"runningUnknown"`
}

type runningPod struct {
	Namespace  string   `json:"namespace"`
	Name       string   `json:"name"`
	Kind       string   `json:"kind"`
	Owner      string   `json:"owner"`
	Stage      string   `json:"stage"`
	Containers []string `json:"containers"`
}

// told is whether the server said anything about running pods.
func (v runningView) told() bool { return v.Running != nil || v.RunningUnknown != "" }

// maxRunningLines bounds the pods a revocation prints; -o json has them
// all (up to the server's bound).
const maxRunningLines = 20

// printRunning writes the running pods as a table, at most max rows (0:
// all), and what was left out.
func printRunning(w io.Writer, v runningView, max int) {
	if v.RunningUnknown != "" {
		fmt.Fprintf(w, "where it runs is not known: %s\n", v.RunningUnknown)
		return
	}
	if v.RunningTotal == 0 {
		fmt.Fprintln(w, "running in no pod now")
		return
	}
	fmt.Fprintln(w, "NAMESPACE\tPOD\tOWNER\tSTAGE\tCONTAINERS")
	shown := 0
	for _, p := range v.Running {
		if max > 0 && shown == max {
			break
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Namespace, kindName(p.Kind, p.Name), p.Owner, dash(p.Stage), strings.Join(p.Containers, ","))
		shown++
	}
	if rest := v.RunningTotal - shown; rest > 0 {
		fmt.Fprintf(w, "… and %d more (stagegate report lists the violating ones)\n", rest)
	}
}

// violationsView is GET /v1/violations.
type violationsView struct {
	Violations []violation `json:"violations"`
	Next       string      `json:"next,omitempty"`
}

type violation struct {
	Namespace   string    `json:"namespace"`
	Pod         string    `json:"pod"`
	Kind        string    `json:"kind"`
	Owner       string    `json:"owner"`
	Stage       string    `json:"stage"`
	Image       string    `json:"image"`
	Digest      string    `json:"digest,omitempty"`
	Reason      string    `json:"reason"`
	Message     string    `json:"message,omitempty"`
	LedgerIndex *uint64   `json:"ledgerIndex,omitempty"`
	Since       time.Time `json:"since"`
}

// reportTable shows the violations, and where the next page starts.
func reportTable(raw []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		var v violationsView
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("unexpected answer: %w", err)
		}
		if len(v.Violations) == 0 && v.Next == "" {
			fmt.Fprintln(w, "no running pod violates its stage")
			return nil
		}
		fmt.Fprintln(w, "NAMESPACE\tPOD\tSTAGE\tREASON\tIMAGE\tDIGEST\tENTRY\tSINCE")
		for _, x := range v.Violations {
			entry := "-"
			if x.LedgerIndex != nil {
				entry = strconv.FormatUint(*x.LedgerIndex, 10)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Namespace, kindName(x.Kind, x.Pod), x.Stage, x.Reason, oneLine(x.Image, 60),
				shortDigest(x.Digest), entry, when(x.Since))
		}
		if v.Next != "" {
			fmt.Fprintf(w, "\nmore violations follow: add --after %s\n", v.Next)
		}
		return nil
	}
}

// maxReportPage is the server's bound of a page of violations.
const maxReportPage = 1000

func newReportCommand(s Streams) *cobra.Command {
	cf := clientFlags{lookup: s.LookupEnv}
	var stage, namespace, after, output string
	var limit int
	cmd := &cobra.Command{
		Use:   "report [--stage S] [--namespace N]",
		Short: "List the running pods that admission would refuse now (continuous validation)",
		Long: `List the running pods that their stage would not admit now, with the image, digest,
stage, reason and the ledger entry in force (a revocation's), as continuous
validation found them. It needs a server with continuousValidation enabled.`,
		Example: `  stagegate report --stage prod
  stagegate report --namespace shop -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 {
				return fmt.Errorf("--limit %d must be at least 1", limit)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			// Pages of the server's size until --limit: one answer,
			// with the next page's --after when it stopped short.
			var all violationsView
			all.Violations = []violation{}
			for {
				q := url.Values{}
				q.Set("limit", strconv.Itoa(min(limit-len(all.Violations), maxReportPage)))
				for k, v := range map[string]string{"stage": stage, "namespace": namespace, "after": after} {
					if v != "" {
						q.Set(k, v)
					}
				}
				_, out, err := c.do(cmd.Context(), http.MethodGet, "/v1/violations?"+q.Encode(), nil)
				if err != nil {
					return err
				}
				var page violationsView
				if err := json.Unmarshal(out, &page); err != nil {
					return fmt.Errorf("unexpected answer: %w", err)
				}
				all.Violations = append(all.Violations, page.Violations...)
				all.Next = page.Next
				if page.Next == "" || len(all.Violations) >= limit {
					break
				}
				after = page.Next
			}
			raw, err := json.MarshalIndent(all, "", "  ")
			if err != nil {
				return err
			}
			return printAnswer(s, output, append(raw, '\n'), reportTable(raw))
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVar(&stage, "stage", "", "only this stage's violations")
	cmd.Flags().StringVar(&namespace, "namespace", "", "only this namespace's violations")
	cmd.Flags().StringVar(&after, "after", "", "start after this namespace/pod (the last line of the page before says it)")
	cmd.Flags().IntVar(&limit, "limit", 1000, "the most violations to list")
	cmd.Flags().StringVarP(&output, "output", "o", "", outputHelp)
	return cmd
}

// printAffected says which running pods a revocation affects, bounded; a
// server without continuous validation's answers says nothing of them.
func printAffected(w io.Writer, raw []byte) {
	var v runningView
	if json.Unmarshal(raw, &v) != nil || !v.told() {
		return
	}
	if v.RunningUnknown != "" {
		fmt.Fprintf(w, "running pods affected: not known: %s\n", v.RunningUnknown)
		return
	}
	fmt.Fprintf(w, "running pods affected: %d\n", v.RunningTotal)
	if v.RunningTotal == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	printRunning(tw, v, maxRunningLines)
	_ = tw.Flush()
}

// kindName is how a table names a pod (its name) or a GitOps object
// (Kind/name, e.g. OCIRepository/cfg), in the POD column.
func kindName(kind, name string) string {
	if kind == "" || kind == "Pod" {
		return name
	}
	return kind + "/" + name
}
