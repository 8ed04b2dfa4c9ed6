package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/ledger"
)

// The -o formats of the commands that print an API answer, as kubectl's.
// Any other -o value is a file that gets the answer as JSON (a receipt
// that `receipt verify` reads).
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

const outputHelp = "table, json, yaml, or a FILE for the JSON answer (default: table on a terminal, json otherwise)"

// isTerminal reports whether w is a terminal, as progress bars and tables
// are for people and a pipeline reads JSON.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// printAnswer prints the API's JSON answer raw in the form -o asks for.
// The default is a table on a terminal and JSON otherwise, so that scripts
// that read stdout keep reading what they read before tables existed.
func printAnswer(s Streams, output string, raw []byte, table func(io.Writer) error) error {
	if output == "" {
		output = outputJSON
		if isTerminal(s.Out) {
			output = outputTable
		}
	}
	switch output {
	case outputJSON:
		_, err := s.Out.Write(raw)
		return err
	case outputYAML:
		y, err := yaml.JSONToYAML(raw)
		if err != nil {
			return fmt.Errorf("unexpected answer: %w", err)
		}
		_, err = s.Out.Write(y)
		return err
	case outputTable:
		tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
		if err := table(tw); err != nil {
			return err
		}
		return tw.Flush()
	}
	if err := os.WriteFile(output, raw, 0o644); err != nil {
		return fmt.Errorf("-o %s: %w", output, err)
	}
	return nil
}

// receiptTable is the one-row table of a promotion or revocation receipt.
func receiptTable(raw []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		var rc ledger.Receipt
		if err := json.Unmarshal(raw, &rc); err != nil {
			return fmt.Errorf("unexpected answer: %w", err)
		}
		e := rc.Entry
		fmt.Fprintln(w, "ENTRY\tKIND\tSTAGE\tREPOSITORY\tDIGEST\tBY\tTIME\tCHECKPOINT")
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\tsize %d\n", e.Index, e.Kind, e.Stage, dash(e.Repository), shortDigest(e.Digest),
			e.Subject, when(e.Time), rc.Inclusion.TreeSize)
		return nil
	}
}

// statusView is GET /v1/images/... as the status table reads it.
type statusView struct {
	Key     string                    `json:"key"`
	States  map[string][]ledger.State `json:"states"`
	History []ledger.Entry            `json:"history"`
	Next    *uint64                   `json:"next"`
	runningView
}

// statusTable shows the state in each stage, in pipeline order, then the
// page of history and where the next page starts.
func statusTable(raw []byte, stages []string) func(io.Writer) error {
	return func(w io.Writer) error {
		var v statusView
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("unexpected answer: %w", err)
		}
		fmt.Fprintln(w, "STAGE\tDIGEST\tSTATE\tSINCE\tBY\tENTRY")
		for _, st := range orderedStages(v.States, stages) {
			for _, s := range v.States[st] {
				state, since, by, idx := "promoted", s.PromotedAt, s.PromotedBy, s.PromotedIndex
				if s.Foreign {
					state = "promoted (from the registry)"
				}
				if s.Revoked {
					state, since, by, idx = "REVOKED: "+s.RevokeReason, s.RevokedAt, s.RevokedBy, s.RevokedIndex
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", st, shortDigest(s.Digest), state, when(since), by, idx)
			}
		}
		fmt.Fprintln(w, "\nENTRY\tKIND\tSTAGE\tDIGEST\tTIME\tBY\tREASON")
		for _, e := range v.History {
			kind := string(e.Kind)
			if e.OverridesRevocation != nil {
				kind += fmt.Sprintf(" (overrides revocation %d)", *e.OverridesRevocation)
			}
			if len(e.Set) > 0 {
				kind += " (" + setWords(e.Set) + ")"
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Index, kind, dash(e.Stage), shortDigest(e.Digest), when(e.Time), e.Subject, oneLine(e.Reason, 60))
		}
		if v.Next != nil {
			fmt.Fprintf(w, "\nmore history follows: add --start %d\n", *v.Next)
		}
		if v.told() {
			fmt.Fprintln(w)
			printRunning(w, v.runningView, 0)
		}
		return nil
	}
}

// orderedStages lists the stages of states in pipeline order, then any
// the client does not know (another stagegate's) by name.
func orderedStages(states map[string][]ledger.State, pipeline []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range pipeline {
		if len(states[st]) > 0 {
			out = append(out, st)
			seen[st] = true
		}
	}
	var rest []string
	for st := range states {
		if !seen[st] {
			rest = append(rest, st)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// shortDigest is the first 12 hex digits, as docker and crane show them;
// -o json has the whole digest.
func shortDigest(d string) string {
	if hex, ok := strings.CutPrefix(d, "sha256:"); ok && len(hex) > 12 {
		return "sha256:" + hex[:12]
	}
	return dash(d)
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line: newlines and tabs become spaces
// and a long text is cut at n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return dash(s)
}
