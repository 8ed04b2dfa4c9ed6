package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/web"
)

// registerWeb serves the web view on mux, the public mux: its actions
// are requests to mux itself, so on a replica they are forwarded to the
// leader like the CLI's.
func (a *App) registerWeb(cfg *config.Config, mux *http.ServeMux, reads readLedger, auth *api.Authenticator) error {
	if cfg.UI.Disabled {
		return nil
	}
	keys, err := webKeys(cfg)
	if err != nil {
		return err
	}
	opts := []web.Option{web.WithLogger(a.opts.logger), web.WithRequests(a.Service), web.WithSessionTTL(cfg.UI.SessionLifetime())}
	if a.opts.now != nil {
		opts = append(opts, web.WithClock(a.opts.now))
	}
	if a.continuous != nil {
		opts = append(opts, web.WithRunning(a.continuous))
	}
	if a.replica != nil {
		opts = append(opts, web.WithPeers(webPeers{a.replica}))
	}
	ui, err := web.New(reads, auth, mux, cfg.StageNames(), keys, opts...)
	if err != nil {
		return err
	}
	ui.Register(mux)
	if a.replica != nil {
		// The peer port serves already (wire); a ServeMux takes routes
		// while it serves.
		a.replica.peer.Handle("POST "+web.PeerSessionPath, ui.PeerHandler())
	}
	return nil
}

// webPeers are the members of the cluster as the web view's sessions ask
// them: over the peer port, as this member, and only a configured
// member at its configured address.
type webPeers struct{ r *replica }

func (p webPeers) Self() string      { return p.r.cfg.NodeID }
func (p webPeers) Members() []string { return p.r.ids }

func (p webPeers) Call(ctx context.Context, id, path string, body []byte) (int, []byte, error) {
	var addr string
	for _, m := range p.r.cfg.Members {
		if m.ID == id {
			addr = m.Address
		}
	}
	if addr == "" || id == p.r.cfg.NodeID {
		return 0, nil, fmt.Errorf("web: %q is not another member of the cluster", id)
	}
	resp, err := p.r.fwd.Call(ctx, p.r.cfg.NodeID, id, addr, http.MethodPost, path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("web: ask %s: %w", id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, fmt.Errorf("web: ask %s: %w", id, err)
	}
	return resp.StatusCode, b, nil
}

// webKeys are the public keys the browser verifies entries with, as the
// files hold them: the cosign key, the log key, and the keys of the
// stagegates whose entries this one imports.
func webKeys(cfg *config.Config) (web.Keys, error) {
	read := func(setting, path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("web: %s: %w", setting, err)
		}
		return string(b), nil
	}
	var k web.Keys
	var err error
	if k.Cosign, err = read("keys.cosignPub", cfg.Keys.CosignPub); err != nil {
		return k, err
	}
	if k.Log, err = read("keys.logPub", cfg.Keys.LogPub); err != nil {
		return k, err
	}
	k.Log = strings.TrimSpace(k.Log)
	if false {
		return k, err
	}
	for _, p := range cfg.RegistrySource.TrustedKeys {
		t, err := read("registrySource.trustedKeys", p)
		if err != nil {
			return k, err
		}
		k.Trusted = append(k.Trusted, t)
	}
	return k, nil
}
