package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/ledger"
)

func newCheckCommand(s Streams) *cobra.Command {
	lf := ledgerFlags{cf: configFlags{lookup: s.LookupEnv}}
	cf := clientFlags{lookup: s.LookupEnv}
	var files []string
	var stage, output string
	var remote bool
	cmd := &cobra.Command{
		Use:   "check -f MANIFEST --stage STAGE",
		Short: "What-if: the decision the webhook would make for each workload of a manifest",
		Long: "check builds the AdmissionRequest the API server would send for each object of a\n" +
			"multi-document manifest and decides it exactly as the webhook does, as a dry run.\n" +
			"By default it reads the local ledger (read-only; a running serve holds its lock,\n" +
			"so use --remote to ask the running server instead). It exits 1 when any object\n" +
			"would be refused.",
		Example: `  stagegate check -f deploy.yaml --stage prod
  kubectl kustomize overlays/prod | stagegate check -f - --stage prod --remote`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in bytes.Buffer
			for _, f := range files {
				if err := readManifest(&in, s, f); err != nil {
					return err
				}
			}
			var review admission.ReviewFunc
			var check func() ([]admission.CheckResult, error)
			if remote {
				c, err := cf.client()
				if err != nil {
					return err
				}
				review = c.review
			} else {
				cfg, err := lf.cf.load()
				if err != nil {
					return err
				}
				// The webhook's own reviewer, registry source included,
				// over the ledger opened read-only.
				opts := []app.Option{app.WithReadOnly()}
				if lf.file != "" {
					opts = append(opts, app.WithLedgerFile(lf.file))
				}
				a, err := app.Build(cmd.Context(), cfg, opts...)
				if errors.Is(err, ledger.ErrLocked) {
					return fmt.Errorf("%w\n  a running stagegate holds the ledger; use --remote to ask it", err)
				}
				if err != nil {
					return err
				}
				defer a.Close()
				if err := a.Start(cmd.Context()); err != nil {
					return err
				}
				// Check, not CheckWith: the Flux source objects a
				// HelmChart or HelmRelease names are looked up in the
				// manifest, as the webhook looks them up in the cluster.
				check = func() ([]admission.CheckResult, error) { return a.Reviewer.Check(cmd.Context(), stage, &in) }
			}
			if check == nil {
				check = func() ([]admission.CheckResult, error) { return admission.CheckWith(cmd.Context(), stage, &in, review) }
			}
			results, err := check()
			if err != nil {
				return err
			}
			refused := printCheck(s, output, results)
			if refused > 0 {
				return fmt.Errorf("%d of %d objects would be refused in stage %s", refused, len(results), stage)
			}
			return nil
		},
	}
	lf.bind(cmd)
	cf.bind(cmd.Flags())
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, or - for stdin (repeatable)")
	cmd.Flags().StringVar(&stage, "stage", "", "stage to check against (required)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().BoolVar(&remote, "remote", false, "ask the running stagegate (--server) instead of reading the ledger")
	_ = cmd.MarkFlagRequired("filename")
	_ = cmd.MarkFlagRequired("stage")
	return cmd
}

func readManifest(buf *bytes.Buffer, s Streams, f string) error {
	var r io.Reader
	if f == "-" {
		r = s.In
	} else {
		file, err := os.Open(f)
		if err != nil {
			return err
		}
		defer file.Close()
		r = file
	}
	if buf.Len() > 0 {
		buf.WriteString("\n---\n")
	}
	_, err := io.Copy(buf, r)
	return err
}

func printCheck(s Streams, output string, results []admission.CheckResult) int {
	refused := 0
	for _, r := range results {
		if !r.Allowed {
			refused++
		}
	}
	if output == "json" {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(results)
		return refused
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tDECISION\tMESSAGE")
	for _, r := range results {
		decision := "allowed"
		if !r.Allowed {
			decision = "REFUSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Namespace, r.Name, decision, r.Message)
		for _, w := range r.Warnings {
			fmt.Fprintf(tw, "\t\t\twarning\t%s\n", w)
		}
	}
	tw.Flush()
	return refused
}

// review asks the running server for the webhook's decision on req, through
// the promotion API (POST /v1/reviews/{stage}, authenticated, always a dry
// run): the webhook's own listener may take reviews from the API server only.
func (c *apiClient) review(ctx context.Context, stage string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	}
	_, out, err := c.do(ctx, http.MethodPost, "/v1/reviews/"+url.PathEscape(stage), ar)
	if err != nil {
		return admission.Errored(req.UID, err)
	}
	var resp admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &resp); err != nil || resp.Response == nil {
		return admission.Errored(req.UID, fmt.Errorf("unexpected answer from the webhook: %s", out))
	}
	return resp.Response
}
