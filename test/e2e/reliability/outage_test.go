package reliability

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// TestRegistryOutage stops the registry process under a running server:
// admission of promoted digests goes on, tag references fail closed naming
// the registry, promotions answer 502 and write nothing, and everything
// recovers on its own when the registry returns on the same address.
func TestRegistryOutage(t *testing.T) {
	reg := framework.StartRegistry(t)
	e := newEnv(t, reg)
	e.sg.Start()
	promoted := e.mustPush("outage/app")
	promotedTag := fmt.Sprintf("%s:t%d", reg.Repo("outage/app"), e.tags.Load())
	pending := e.mustPush("outage/app")
	pendingTag := fmt.Sprintf("%s:t%d", reg.Repo("outage/app"), e.tags.Load())
	if code, body, err := e.promote(e.tokens[0], promoted); err != nil || code != http.StatusCreated {
		t.Fatalf("promote: %d %v %s", code, err, body)
	}
	before := e.checkpoint()

	reg.Stop()

	t.Run("promoted digests are admitted", func(t *testing.T) {
		for i := range 50 {
			resp, err := e.admit("dev", promoted)
			if err != nil {
				t.Fatalf("review %d: %v", i, err)
			}
			if !resp.Allowed {
				t.Fatalf("review %d: denied: %v", i, resp.Result)
			}
		}
	})
	t.Run("unknown digests are denied", func(t *testing.T) {
		resp, err := e.admit("dev", pending)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Allowed {
			t.Fatal("a digest never promoted was admitted")
		}
	})
	t.Run("tag references fail closed naming the registry", func(t *testing.T) {
		resp, err := e.admit("dev", promotedTag)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Allowed {
			t.Fatalf("tag %s admitted while its registry is down", promotedTag)
		}
		if !strings.Contains(resp.Result.Message, reg.Addr) {
			t.Errorf("denial does not name the registry %s: %q", reg.Addr, resp.Result.Message)
		}
	})
	t.Run("promotions answer 502 and write nothing", func(t *testing.T) {
		for _, ref := range []string{pending, pendingTag} {
			code, body, err := e.promote(e.tokens[1], ref)
			if err != nil {
				t.Fatal(err)
			}
			if code != http.StatusBadGateway {
				t.Errorf("promote %s: %d %s, want 502", ref, code, body)
			}
			if !bytes.Contains(body, []byte(reg.Addr)) {
				t.Errorf("502 body does not name the registry %s: %s", reg.Addr, body)
			}
		}
		after := e.checkpoint()
		if after.Size != before.Size || !bytes.Equal(after.Root, before.Root) {
			t.Errorf("ledger changed during the outage: size %d -> %d", before.Size, after.Size)
		}
	})

	reg.Start()

	t.Run("recovery is automatic", func(t *testing.T) {
		var code int
		var body []byte
		eventually(t, 30*time.Second, func() error {
			var err error
			code, body, err = e.promote(e.tokens[2], pending)
			switch {
			case err != nil:
				t.Fatal(err)
			case code == http.StatusCreated:
				return nil
			case code != http.StatusBadGateway:
				t.Fatalf("promote after recovery: %d %s", code, body)
			}
			return fmt.Errorf("%d %s", code, body)
		})
		if _, _, err := e.receipt(body); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			resp, err := e.admit("dev", promotedTag)
			if err != nil {
				t.Fatal(err)
			}
			if !resp.Allowed {
				return fmt.Errorf("tag still denied: %v", resp.Result.Message)
			}
			return nil
		})
	})

	if err := e.sg.Stop(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM", err)
	}
	e.mustLedgerVerify()
}

// eventually retries fn until it returns nil, failing the test with its
// last error after d.
func eventually(t *testing.T, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDiskFull runs serve with its data directory on a small tmpfs and
// fills it: promotions then fail with 5xx, none is acknowledged without
// being stored, admission goes on, and promotions work again once there is
// room, with the ledger intact across a crash.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	// A 4 MiB tmpfs of its own is a disk that fills in milliseconds
	// without filling the machine's. Mounting needs CAP_SYS_ADMIN: CI
	// runs as root, so there it must mount, and a failure fails the test;
	// elsewhere (an unprivileged developer) it skips, saying how to run it.
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		framework.SkipUnlessCI(t, "cannot mount a tmpfs to fill (%v): the disk-full test needs CAP_SYS_ADMIN; "+
			"run it as root: sudo -E go test ./test/e2e/reliability/ -run TestDiskFull", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	reg := framework.StartRegistry(t)
	e := newEnv(t, reg, withDataDir(filepath.Join(mnt, "data")))
	srv := e.sg.Start()
	refs := e.pushMany("full/app", 80)

	type acked struct {
		ref  string
		leaf []byte
	}
	var acks []acked
	promote := func(ref string) (int, []byte) {
		t.Helper()
		code, body, err := e.promote(e.tokens[0], ref)
		if err != nil {
			t.Fatalf("promote %s: %v", ref, err)
		}
		if code == http.StatusCreated {
			rc, _, err := e.receipt(body)
			if err != nil {
				t.Fatalf("receipt: %v", err)
			}
			acks = append(acks, acked{ref, canonical(t, rc.Entry)})
		}
		return code, body
	}
	for _, ref := range refs[:5] {
		if code, body := promote(ref); code != http.StatusCreated {
			t.Fatalf("promote before the disk is full: %d %s", code, body)
		}
	}

	filler := filepath.Join(mnt, "filler")
	fill(t, filler)

	var failed []string
	for _, ref := range refs[5:] {
		code, body := promote(ref)
		switch {
		case code == http.StatusCreated:
			// bbolt reused a free page: stored, so it may be acknowledged.
		case code >= 500:
			failed = append(failed, ref)
			if strings.Contains(string(body), mnt) {
				t.Errorf("500 body names a file on disk: %s", body)
			}
		default:
			t.Fatalf("promote on a full disk: %d %s", code, body)
		}
		if len(failed) == 3 {
			break
		}
	}
	if len(failed) == 0 {
		t.Fatalf("%d promotions on a full disk all succeeded: the test did not fill the disk", len(refs)-5)
	}
	t.Logf("disk full: %d promotions acknowledged in all, %d failed with 5xx", len(acks), len(failed))

	for _, a := range acks {
		resp, err := e.admit("dev", a.ref)
		if err != nil || !resp.Allowed {
			t.Errorf("admission of acknowledged %s on a full disk: %v %v", a.ref, err, resp)
		}
	}
	for _, ref := range failed {
		resp, err := e.admit("dev", ref)
		if err != nil || resp.Allowed {
			t.Errorf("admission of %s, whose promotion failed: %v %v", ref, err, resp)
		}
		if code, body, err := e.do(http.MethodGet, "/v1/images/"+digestOf(ref), e.tokens[0], nil); err != nil || code != http.StatusNotFound {
			t.Errorf("failed promotion of %s left a trace: %d %v %s", ref, code, err, body)
		}
	}
	if size := e.checkpoint().Size; size != uint64(len(acks)) {
		t.Errorf("ledger has %d entries, %d were acknowledged", size, len(acks))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, body := promote(failed[0]); code != http.StatusCreated {
		t.Fatalf("promote once there is room again: %d %s", code, body)
	}

	srv.Kill()
	e.client.CloseIdleConnections()
	e.sg.Start()
	entries := e.entries()
	if len(entries) != len(acks) {
		t.Fatalf("after a crash the ledger has %d entries, %d were acknowledged", len(entries), len(acks))
	}
	for _, a := range acks {
		var rc ledger.Entry
		for _, en := range entries {
			if en.Digest == digestOf(a.ref) {
				rc = en
			}
		}
		if got := canonical(t, rc); !bytes.Equal(got, a.leaf) {
			t.Errorf("acknowledged promotion of %s:\nledger:  %s\nreceipt: %s", a.ref, got, a.leaf)
		}
	}
	if err := e.sg.Stop(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM", err)
	}
	e.mustLedgerVerify()
}

// fill writes path until the filesystem has no room left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{64 << 10, 4 << 10, 512} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill: %v", err)
				}
				break
			}
		}
	}
}
