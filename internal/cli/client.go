package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
)

// clientFlags reach a running stagegate.
type clientFlags struct {
	server  string
	token   string
	caFile  string
	timeout time.Duration
	// fs tells a flag given from one left to the environment or the
	// default.
	fs *pflag.FlagSet
	// lookup reads the environment; nil reads the process's.
	lookup config.LookupFunc
}

// defaultCAFile is what `serve --dev` and `certs generate` write. Only this
// default may be missing, not a file the flag or the environment names: the
// system's roots are used then, for a server with a public certificate.
const defaultCAFile = "certs/ca.crt"

func (f *clientFlags) bind(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.server, "server", "https://127.0.0.1:8443", "stagegate URL (default $"+config.ServerEnv+" if set)")
	fs.StringVar(&f.caFile, "ca-file", defaultCAFile, "CA that signed the server certificate (default $"+config.CAFileEnv+" if set)")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "request timeout")
}

// client applies the environment under the flags: a flag given wins, then
// the environment, then the default. The token comes from the environment
// only (config.TokenEnv).
func (f *clientFlags) client() (*apiClient, error) {
	env := config.FromEnv(f.lookup)
	changed := func(name string) bool { return f.fs != nil && f.fs.Changed(name) }
	if !changed("server") && env.Server != "" {
		f.server = env.Server
	}
	defaultCA := !changed("ca-file") && env.CAFile == ""
	if !changed("ca-file") && env.CAFile != "" {
		f.caFile = env.CAFile
	}
	f.token = env.Token
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	var missingCA bool
	if f.caFile != "" {
		b, err := os.ReadFile(f.caFile)
		switch {
		case errors.Is(err, fs.ErrNotExist) && defaultCA:
			missingCA = true
		case err != nil:
			return nil, fmt.Errorf("--ca-file: %w", explainMissing(err))
		default:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("--ca-file %s: no PEM certificates", f.caFile)
			}
			tlsCfg.RootCAs = pool
		}
	}
	return &apiClient{base: strings.TrimRight(f.server, "/"), token: f.token, missingCA: missingCA,
		http: &http.Client{Timeout: f.timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg}}}, nil
}

type apiClient struct {
	base, token string
	http        *http.Client
	// missingCA says the default CA file was not there, so that a
	// certificate the system does not trust can be explained.
	missingCA bool
}

// apiError is a non-2xx answer.
type apiError struct {
	Status     int
	Message    string   `json:"error"`
	Violations []string `json:"violations"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (HTTP %d)", e.Message, e.Status)
	for _, v := range e.Violations {
		fmt.Fprintf(&b, "\n  - %s", v)
	}
	return b.String()
}

func (c *apiClient) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	resp, err := c.send(ctx, method, path, body, "")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, out, c.explain(newAPIError(resp.StatusCode, out))
	}
	return resp.StatusCode, out, nil
}

// send makes an authenticated request with body as JSON (if not nil).
func (c *apiClient) send(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// The server cut the connection instead of answering, which is
			// what its write timeout does; TLS may report it as anything.
			return nil, fmt.Errorf("stagegate at %s closed the connection without an answer (its log says why): %w", c.base, err)
		}
		return nil, c.explain(fmt.Errorf("cannot reach stagegate at %s: %w", c.base, err))
	}
	return resp, nil
}

// explain adds to err what the client lacked, and which command makes it:
// the token for a 401 sent without one, the CA for a certificate the
// system does not trust.
func (c *apiClient) explain(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && c.token == "" {
		return fmt.Errorf("%w\n  $%s is not set; %s", err, config.TokenEnv, makesToken)
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) && c.missingCA {
		return fmt.Errorf("%w\n  %s does not exist, so only the system's CAs were trusted; %s, or pass --ca-file", err, defaultCAFile, makesCerts)
	}
	return err
}

// newAPIError reads the API's {"error": ..., "violations": [...]} body,
// or keeps the body as the message when it is something else.
func newAPIError(status int, body []byte) *apiError {
	ae := &apiError{Status: status}
	if json.Unmarshal(body, ae) != nil || ae.Message == "" {
		ae.Message = strings.TrimSpace(string(body))
	}
	return ae
}

func newPromoteCommand(s Streams) *cobra.Command {
	cf := clientFlags{lookup: s.LookupEnv}
	var stage, reason, output, evidence, progress string
	var overrideRevocation, freezeOverride, wait bool
	var waitEvery time.Duration
	cmd := &cobra.Command{
		Use:   "promote IMAGE [IMAGE...] --stage STAGE",
		Short: "Promote an image (by tag or digest) to a stage, or several together as a set; -o FILE keeps the signed receipt",
		Long: `Promote an image (by tag or digest) to a stage; -o FILE keeps the signed receipt.

With several images (an image and its config artifact, or the images of
one release) they are promoted as one promotion set: all of them or none,
decided by the policy together, with one receipt that proves every member.`,
		Example: `  export STAGEGATE_TOKEN=$(cat data/dev-token)
  stagegate promote 127.0.0.1:5001/sample/app:1.0 --stage dev --reason "build 42" -o receipt.json
  stagegate promote 127.0.0.1:5001/sample/app:1.0 127.0.0.1:5001/sample/multi:1.0 --stage dev -o set.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if len(args) > 1 {
				if overrideRevocation || wait {
					return errors.New("--override-revocation and --wait take one image: promote it on its own")
				}
				return promoteSet(cmd.Context(), s, c, args, stage, reason, evidence, freezeOverride, output)
			}
			body := map[string]any{"image": args[0], "stage": stage, "reason": reason}
			if overrideRevocation {
				if strings.TrimSpace(reason) == "" {
					return errors.New("--override-revocation needs --reason: why the revoked digest may run again is recorded and signed")
				}
				body["overrideRevocation"] = true
			}
			if err := addPromoteOptions(body, reason, evidence, freezeOverride); err != nil {
				return err
			}
			mode, err := progressMode(progress, s.Err)
			if err != nil {
				return err
			}
			var status int
			var out []byte
			if mode == "none" {
				status, out, err = c.do(cmd.Context(), http.MethodPost, "/v1/promotions", body)
			} else {
				status, out, err = c.promoteStreaming(cmd.Context(), body, mode, s.Err)
			}
			if err != nil {
				// A 5xx is no refusal: the registry or the server failed,
				// and the same request can be repeated.
				if ae := (*apiError)(nil); errors.As(err, &ae) && ae.Status >= http.StatusInternalServerError {
					return fmt.Errorf("promotion failed: %w", err)
				}
				return fmt.Errorf("promotion refused: %w", err)
			}
			if status == http.StatusAccepted {
				if status, out, err = awaitApprovals(cmd.Context(), s, c, out, body, wait, waitEvery, output); err != nil || status == http.StatusAccepted {
					return err
				}
			}
			var rc ledger.Receipt
			if err := json.Unmarshal(out, &rc); err != nil {
				return fmt.Errorf("unexpected answer: %w", err)
			}
			verb := "promoted"
			if status == http.StatusOK {
				verb = "already promoted"
			}
			fmt.Fprintf(s.Err, "%s %s@%s to %s (ledger entry %d)\n", verb, rc.Entry.Repository, rc.Entry.Digest, rc.Entry.Stage, rc.Entry.Index)
			if o := rc.Entry.OverridesRevocation; o != nil {
				fmt.Fprintf(s.Err, "overriding the revocation at ledger entry %d\n", *o)
			}
			return printAnswer(s, output, out, receiptTable(out))
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVar(&stage, "stage", "", "target stage (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why; recorded and signed")
	cmd.Flags().StringVar(&evidence, "evidence", "", "JSON object of evidence passed to the policy and recorded")
	cmd.Flags().StringVarP(&output, "output", "o", "", "the signed receipt: "+outputHelp)
	cmd.Flags().BoolVar(&overrideRevocation, "override-revocation", false, "promote a digest that is revoked in the stage again (needs --reason and a group of the stage's overrideRevocationGroups; recorded)")
	cmd.Flags().BoolVar(&freezeOverride, "freeze-override", false, "an emergency promotion while the stage's windows close it (needs --reason and a group of the stage's freezeOverrideGroups; recorded)")
	cmd.Flags().BoolVar(&wait, "wait", false, "in a stage with approvals, wait until the request is approved (then print the receipt), rejected or expired (then fail)")
	cmd.Flags().DurationVar(&waitEvery, "wait-interval", 5*time.Second, "how often --wait asks")
	cmd.Flags().StringVar(&progress, "progress", "auto", "show the copy to a target registry: auto (on a terminal), plain or none")
	_ = cmd.MarkFlagRequired("stage")
	return cmd
}

func newRevokeCommand(s Streams) *cobra.Command {
	cf := clientFlags{lookup: s.LookupEnv}
	var stage, reason, repo, output string
	cmd := &cobra.Command{
		Use:   "revoke DIGEST --stage STAGE|'*' --reason TEXT",
		Short: "Withdraw a digest from a stage, or from all stages with --stage '*'",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			digest := args[0]
			if i := strings.LastIndexByte(digest, '@'); i >= 0 {
				if repo == "" {
					repo = digest[:i]
				}
				digest = digest[i+1:]
			}
			status, out, err := c.do(cmd.Context(), http.MethodPost, "/v1/revocations",
				map[string]any{"digest": digest, "repository": repo, "stage": stage, "reason": reason})
			if err != nil {
				return fmt.Errorf("revocation refused: %w", err)
			}
			verb := "revoked"
			if status == http.StatusOK {
				verb = "already revoked"
			}
			fmt.Fprintf(s.Err, "%s %s in %s\n", verb, digest, stage)
			printAffected(s.Err, out)
			return printAnswer(s, output, out, receiptTable(out))
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVar(&stage, "stage", "", "stage to revoke from, or '*' for all (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.Flags().StringVar(&repo, "repository", "", "repository, checked against the ledger")
	cmd.Flags().StringVarP(&output, "output", "o", "", "the signed receipt: "+outputHelp)
	_ = cmd.MarkFlagRequired("stage")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func newStatusCommand(s Streams) *cobra.Command {
	cf := clientFlags{lookup: s.LookupEnv}
	var output string
	var start, limit uint64
	cmd := &cobra.Command{
		Use:   "status REPOSITORY|DIGEST|IMAGE@DIGEST",
		Short: "Show an image's state in every stage and its history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			key := args[0]
			if i := strings.LastIndexByte(key, '@'); i >= 0 {
				key = key[i+1:]
			}
			q := url.Values{}
			if cmd.Flags().Changed("start") {
				q.Set("start", strconv.FormatUint(start, 10))
			}
			if cmd.Flags().Changed("limit") {
				q.Set("limit", strconv.FormatUint(limit, 10))
			}
			path := "/v1/images/" + url.PathEscape(key)
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			_, out, err := c.do(cmd.Context(), http.MethodGet, path, nil)
			if err != nil {
				return err
			}
			// The client has no config of its own: the stages are shown in
			// the default pipeline's order, any others after them by name.
			return printAnswer(s, output, out, statusTable(out, config.Default().StageNames()))
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", outputHelp)
	cmd.Flags().Uint64Var(&start, "start", 0, "first ledger index of the history page")
	cmd.Flags().Uint64Var(&limit, "limit", 100, "entries per history page (at most 1000)")
	return cmd
}
