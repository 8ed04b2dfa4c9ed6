package registry

import (
	"context"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestCAHostTransportIsReused: a registry with its own CA gets one
// transport, built with the client, so that its connections are kept
// between calls rather than each call dialling and shaking hands anew.
func TestCAHostTransportIsReused(t *testing.T) {
	srv := httptest.NewUnstartedServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	ref, err := name.ParseReference(host + "/team/app:1.0")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	written := conns.Load()

	c := New(WithHost(host, Host{RootCAs: pool}))
	built := c.guard.byHost[host]
	if built == nil {
		t.Fatalf("no transport of its own for %s", host)
	}
	for range 5 {
		if _, err := c.Digest(context.Background(), ref.String()); err != nil {
			t.Fatal(err)
		}
	}
	// The transport is the one built with the client, not a clone per
	// call. The connection count is only logged: on a loaded machine the
	// guard's idle deadlines may close a kept connection between calls
	// (seen once in a full `go test ./internal/...` on 2 cores).
	if c.guard.byHost[host] != built {
		t.Fatal("the host's transport was replaced during the look-ups")
	}
	t.Logf("5 look-ups opened %d connections", conns.Load()-written)
}
