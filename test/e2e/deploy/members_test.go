package deploy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// clusterOf returns the cluster: section of the server config in the
// ConfigMap stagegate-config of the rendered manifests.
func clusterOf(t *testing.T, manifests string) map[string]any {
	t.Helper()
	for _, doc := range strings.Split(manifests, "---\n") {
		var cm struct {
			Kind     string
			Metadata struct{ Name string }
			Data     map[string]string
		}
		if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
			t.Fatal(err)
		}
		if cm.Kind != "ConfigMap" || cm.Metadata.Name != "stagegate-config" {
			continue
		}
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
			t.Fatal(err)
		}
		c, ok := cfg["cluster"].(map[string]any)
		if !ok {
			t.Fatalf("config.yaml has no cluster section:\n%s", cm.Data["config.yaml"])
		}
		return c
	}
	t.Fatal("no ConfigMap stagegate-config in the manifests")
	return nil
}

// TestMembersFromTheCommands runs four real `serve` members on loopback
// with what the deploy commands make: the peer certificates of `certs
// generate --peers` (with --host 127.0.0.1, since there is no cluster DNS
// here), and the cluster: section of `manifests --replicas 3 --non-voters
// 1`, of which only the addresses, the listen port and the file paths are
// moved to this machine; each member learns its ID from
// STAGEGATE_CLUSTER_NODE_ID, as the pods do from their names. All become
// ready, which needs a quorum over mutual TLS with those certificates;
// `cluster status` shows one leader and the non-voter as such; a
// promotion sent to the non-voter is then served, byte-identical, by
// every member.
func TestMembersFromTheCommands(t *testing.T) {
	bin := framework.BuildBinary(t, "./cmd/stagegate")
	work := t.TempDir()
	stagegate(t, bin, work, "certs", "generate", "--peers", "stagegate-0,stagegate-1,stagegate-2,stagegate-3", "--host", "127.0.0.1")
	// One signing identity for all members, as the Secret stagegate-keys
	// gives them; no password.
	stagegate(t, bin, work, "keys", "generate", "--dir", "keys")
	section := clusterOf(t, stagegate(t, bin, work, "manifests", "--replicas", "3", "--non-voters", "1", "--ca-file", "", "--registry", "ghcr.io"))

	reg := framework.StartRegistry(t)
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	tag, _ := name.ParseReference(reg.Repo("app") + ":v1")
	if err := remote.Write(tag, img, remote.WithTransport(reg.Transport()), remote.WithAuth(reg.Authenticator())); err != nil {
		t.Fatal(err)
	}
	ref := reg.Repo("app") + "@" + digest.String()

	members := section["members"].([]any)
	ports := make([]int, len(members))
	for i, m := range members {
		ports[i] = framework.FreePort(t)
		m.(map[string]any)["address"] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	copyKeys := func(dir string) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"cosign.key", "cosign.pub", "log.key", "log.pub"} {
			b, err := os.ReadFile(filepath.Join(work, "keys", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	const token = "sge2e_deploy_members_token_0123456789abcdef"
	var nodes []*framework.Stagegate
	for i, m := range members {
		id := m.(map[string]any)["id"].(string)
		c := map[string]any{}
		for k, v := range section {
			c[k] = v
		}
		c["listen"] = fmt.Sprintf("127.0.0.1:%d", ports[i])
		delete(c, "dataDir") // the default: raft under the member's dataDir
		peer := filepath.Join(work, "certs", "peers", id)
		c["tls"] = map[string]any{"caFile": filepath.Join(peer, "ca.crt"), "certFile": filepath.Join(peer, "tls.crt"), "keyFile": filepath.Join(peer, "tls.key")}
		cfg, err := yaml.Marshal(map[string]any{
			"cluster":    c,
			"registries": []any{map[string]any{"host": reg.Addr, "insecure": true}},
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, framework.StartStagegate(t, framework.WithName(id), framework.WithoutStart(),
			framework.WithKeys(copyKeys), framework.WithToken(token, "ci", "pipeline"), framework.WithConfig(string(cfg)),
			framework.WithEnv("STAGEGATE_CLUSTER_NODE_ID="+id)))
	}
	// A member is ready only once a quorum runs: start all, then wait.
	for _, n := range nodes {
		n.Spawn()
	}
	for _, n := range nodes {
		if err := n.WaitReady(n.Process()); err != nil {
			t.Fatalf("%s never became ready: %v\n%s", n.Name, err, n.Logs())
		}
	}

	var status struct {
		Members []struct {
			ID, Role, Error string
			NonVoter        bool
		}
	}
	if err := yaml.Unmarshal([]byte(nodes[0].MustRun(t, nodes[0].ClientFlags("cluster", "status", "-o", "json")...)), &status); err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, m := range status.Members {
		if m.Role == "leader" {
			leaders++
		}
		if m.Error != "" || m.NonVoter != (m.ID == "stagegate-3") {
			t.Errorf("cluster status: %+v", m)
		}
	}
	if len(status.Members) != 4 || leaders != 1 {
		t.Errorf("cluster status: %d members, %d leaders: %+v", len(status.Members), leaders, status.Members)
	}

	// Sent to the non-voter, which forwards it to the leader. The
	// receipt means the leader applied it; the others apply it a moment
	// later, so each is asked until it serves a checkpoint.
	nodes[3].MustRun(t, nodes[3].ClientFlags("promote", ref, "--stage", "dev", "--reason", "deploy e2e", "-o", os.DevNull)...)
	var first string
	for _, n := range nodes {
		var got string
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		for got = checkpoint(t, n); got == "" && ctx.Err() == nil; got = checkpoint(t, n) {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if first == "" {
			first = got
		}
		// A checkpoint's second line is the tree size.
		if lines := strings.Split(got, "\n"); len(lines) < 2 || lines[1] != "1" || got != first {
			t.Errorf("%s serves checkpoint\n%s\nwant one entry, as %s serves:\n%s", n.Name, got, nodes[0].Name, first)
		}
	}
}

// checkpoint is the signed checkpoint n serves, "" while its ledger is
// empty.
func checkpoint(t *testing.T, n *framework.Stagegate) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, n.URL+"/v1/ledger/checkpoint", nil)
	req.Header.Set("Authorization", "Bearer "+n.Token)
	resp, err := n.Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return string(b)
	case http.StatusNotFound: // ledger: empty, not applied yet
		return ""
	}
	t.Fatalf("%s: checkpoint: %s %s", n.Name, resp.Status, b)
	return ""
}
