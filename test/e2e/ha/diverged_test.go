package ha

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// A replica whose ledger is not the cluster's (here: a single node's, with
// the same keys and more entries than the cluster, as an upgrade that
// skipped the migration would leave member 0) never reports ready and
// denies everything, naming why, instead of serving its own history.
func TestDivergedLedgerFailsClosed(t *testing.T) {
	h := newHA(t, 3)
	h.mustPromote(0, must(h.pushImage("app")))

	solo := framework.StartStagegate(t, framework.WithName("solo"),
		framework.WithKeys(func(dir string) { signingtest.WriteKeyDir(t, dir) }),
		framework.WithConfig(fmt.Sprintf("logOrigin: %s\nregistries:\n- {host: %q, insecure: true}\n", signingtest.LogName, h.reg.Addr)),
		framework.WithToken(h.tokens[0], "client-00", "pipeline", "release"))
	var own string
	for range 3 {
		own = must(h.pushImage("solo"))
		code, b, err := doAt(h, solo, own)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("solo promote: %d %v %s", code, err, b)
		}
	}
	if err := solo.Stop(); err != nil {
		t.Fatal(err)
	}

	f := (h.leader(0) + 1) % 3
	if err := h.nodes[f].Stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(solo.DataDir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.nodes[f].DataDir, "ledger.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	h.nodes[f].Spawn() // not Start: it must never be ready
	h.waitFor(h.ids[f]+" to find its ledger is not the cluster's", func() bool {
		code, body := h.readyz(f)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "they are not one ledger")
	})
	h.mustAdmit(f, own, false, "they are not one ledger")
}

// doAt promotes ref on a single stagegate.
func doAt(h *ha, sg *framework.Stagegate, ref string) (int, []byte, error) {
	c := sg.Client(h.t)
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, sg.URL+"/v1/promotions",
		strings.NewReader(fmt.Sprintf(`{"image":%q,"stage":"dev","reason":"solo"}`, ref)))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.tokens[0])
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
