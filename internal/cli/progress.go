package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/stagegate/stagegate/internal/oci"
)

// progressMode resolves --progress: auto shows a live line on a terminal
// and nothing in a pipeline, as docker and crane do.
func progressMode(flag string, w io.Writer) (string, error) {
	switch flag {
	case "plain", "none":
		return flag, nil
	case "auto", "":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return "tty", nil
		}
		return "none", nil
	}
	return "", fmt.Errorf("--progress must be auto, plain or none, not %q", flag)
}

// promoteStreaming posts a promotion asking for JSON lines, shows the copy
// progress on w, and returns the final status and body.
func (c *apiClient) promoteStreaming(ctx context.Context, body any, mode string, w io.Writer) (int, []byte, error) {
	resp, err := c.send(ctx, http.MethodPost, "/v1/promotions", body, "application/x-ndjson")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, out, newAPIError(resp.StatusCode, out)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	shown := false
	for sc.Scan() {
		var line struct {
			Progress *oci.ProgressEvent `json:"progress"`
			Status   int                `json:"status"`
			Body     json.RawMessage    `json:"body"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return 0, nil, fmt.Errorf("unexpected answer: %w", err)
		}
		if p := line.Progress; p != nil {
			showProgress(w, mode, *p)
			shown = true
			continue
		}
		if shown && mode == "tty" {
			fmt.Fprintln(w)
		}
		if line.Status >= 300 {
			return line.Status, line.Body, newAPIError(line.Status, line.Body)
		}
		return line.Status, line.Body, nil
	}
	if err := sc.Err(); err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return 0, nil, fmt.Errorf("the server closed the stream without an answer")
}

func showProgress(w io.Writer, mode string, p oci.ProgressEvent) {
	msg := fmt.Sprintf("copying: %d/%d layers, %s/%s", p.LayersDone, p.Layers, human(p.BytesDone), human(p.Bytes))
	if p.LayersSkipped > 0 {
		msg += fmt.Sprintf(" (%d layers, %s already there)", p.LayersSkipped, human(p.BytesSkipped))
	}
	switch mode {
	case "tty":
		fmt.Fprintf(w, "\r\033[K%s", msg)
	case "plain":
		fmt.Fprintln(w, msg)
	}
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
