package hostile

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

func be64(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// rewrite applies fn to the ledger file at path inside one bbolt
// transaction, as an attacker with write access to the file could.
func rewrite(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// history fills a server's ledger with five entries and stops it.
func history(t *testing.T) (*server, []byte) {
	s := start(t)
	receipt, digest := s.promote("dev")
	s.promote("test")
	code, body := s.do(http.MethodPost, "/v1/promotions", s.token, "application/json",
		map[string]any{"image": s.registry + "/sample/multi:1.0", "stage": "dev", "reason": "r"})
	if code != http.StatusCreated {
		t.Fatalf("promote multi: %d %s", code, body)
	}
	code, body = s.do(http.MethodPost, "/v1/revocations", s.token, "application/json",
		map[string]any{"digest": digest, "stage": "test", "reason": "cve"})
	if code != http.StatusCreated {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if n := s.size(); n != 4 {
		t.Fatalf("ledger size %d, want 4", n)
	}
	s.stop()
	return s, receipt
}

func TestLedgerTampering(t *testing.T) {
	s, _ := history(t)
	orig := filepath.Join(s.dataDir, "ledger.db")
	if out, err := s.stagegate(nil, "ledger", "verify", "--data-dir", s.dataDir, "--ledger", copyFile(t, orig)); err != nil {
		t.Fatalf("untouched ledger does not verify: %v\n%s", err, out)
	}
	logPub, err := os.ReadFile(filepath.Join(s.dataDir, "keys", "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	origin, _, _ := strings.Cut(string(logPub), "+")

	for name, tc := range map[string]struct {
		tamper func(t *testing.T, path string)
		want   []string
	}{
		"byte flipped inside an entry": {func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			// Flip every copy (bbolt keeps stale copies in free pages), so
			// the live one is flipped for sure.
			n := 0
			for i := 0; ; {
				j := bytes.Index(b[i:], []byte(`{"index":2,"kind"`))
				if j < 0 {
					break
				}
				k := i + j + bytes.Index(b[i+j:], []byte(`"subject":"dev"`)) + len(`"subject":"de`)
				b[k] ^= 0x01
				n++
				i = k
			}
			if n == 0 {
				t.Fatal("entry 2 not found in the file")
			}
			os.WriteFile(path, b, 0o600)
		}, []string{"entry 2"}},
		"entry removed": {func(t *testing.T, path string) {
			rewrite(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("entries")).Delete(be64(1)) })
		}, []string{"entry 1", "missing"}},
		"two entries swapped": {func(t *testing.T, path string) {
			rewrite(t, path, func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("entries"))
				one, two := bytes.Clone(b.Get(be64(1))), bytes.Clone(b.Get(be64(2)))
				if err := b.Put(be64(1), two); err != nil {
					return err
				}
				return b.Put(be64(2), one)
			})
		}, []string{"entry 1", "index field says 2"}},
		"file truncated": {func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			os.Truncate(path, fi.Size()/3)
		}, []string{"ledger"}},
		"checkpoint from another key": {func(t *testing.T, path string) {
			signer := signingtest.ForeignLogSigner(t, origin)
			rewrite(t, path, func(tx *bolt.Tx) error {
				meta := tx.Bucket([]byte("meta"))
				cp := string(meta.Get([]byte("checkpoint")))
				body, _, _ := strings.Cut(cp, "\n\n")
				forged, err := note.Sign(&note.Note{Text: body + "\n"}, signer)
				if err != nil {
					return err
				}
				return meta.Put([]byte("checkpoint"), forged)
			})
		}, []string{"checkpoint"}},
	} {
		t.Run(name, func(t *testing.T) {
			path := copyFile(t, orig)
			tc.tamper(t, path)
			out, err := s.stagegate(nil, "ledger", "verify", "--data-dir", s.dataDir, "--ledger", path)
			if err == nil {
				t.Fatalf("ledger verify accepted it:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("ledger verify's message does not name %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestForgedPromotions presents forged attestations and receipts to
// `receipt verify` and `ledger import`; both refuse every one.
func TestForgedPromotions(t *testing.T) {
	s, receipt := history(t)
	keys := filepath.Join(s.dataDir, "keys")
	verify := func(rc []byte) (string, error) {
		p := filepath.Join(t.TempDir(), "receipt.json")
		os.WriteFile(p, rc, 0o600)
		return s.stagegate(nil, "receipt", "verify", p, "--key", filepath.Join(keys, "cosign.pub"), "--log-key", filepath.Join(keys, "log.pub"))
	}
	if out, err := verify(receipt); err != nil {
		t.Fatalf("genuine receipt does not verify: %v\n%s", err, out)
	}
	export := filepath.Join(t.TempDir(), "export.jsonl")
	if out, err := s.stagegate(nil, "ledger", "export", "--data-dir", s.dataDir, "-o", export); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	exported, _ := os.ReadFile(export)

	// A key pair the verifier does not trust.
	other := signingtest.ForeignSigner(t)
	var rc map[string]json.RawMessage
	json.Unmarshal(receipt, &rc)
	var entry map[string]json.RawMessage
	json.Unmarshal(rc["entry"], &entry)
	var env struct {
		PayloadType string            `json:"payloadType"`
		Payload     string            `json:"payload"`
		Signatures  []json.RawMessage `json:"signatures"`
	}
	json.Unmarshal(entry["envelope"], &env)
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)

	var st signing.Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatal(err)
	}
	otherEnv, err := other.Sign(st)
	if err != nil {
		t.Fatal(err)
	}
	edited := env
	edited.Payload = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte(`"stage":"dev"`), []byte(`"stage":"prod"`), 1))
	editedEnv, _ := json.Marshal(edited)

	withEnvelope := func(e []byte) (receipt, line []byte) {
		ent := map[string]json.RawMessage{}
		for k, v := range entry {
			ent[k] = v
		}
		ent["envelope"] = e
		eb, _ := json.Marshal(ent)
		r := map[string]json.RawMessage{}
		for k, v := range rc {
			r[k] = v
		}
		r["entry"] = eb
		rb, _ := json.Marshal(r)
		return rb, eb
	}
	// A proof for another entry: entry 0's receipt with entry 1's proof.
	otherProof := inclusionProof(t, s, 1)

	for name, forged := range map[string]json.RawMessage{
		"attestation signed by another key": otherEnv,
		"envelope whose payload was edited": editedEnv,
	} {
		t.Run(name, func(t *testing.T) {
			rcb, line := withEnvelope(forged)
			if out, err := verify(rcb); err == nil {
				t.Fatalf("receipt verify accepted it:\n%s", out)
			}
			lines := bytes.SplitN(exported, []byte("\n"), 2)
			imp := filepath.Join(t.TempDir(), "forged.jsonl")
			os.WriteFile(imp, append(append(canonical(t, line), '\n'), lines[1]...), 0o600)
			out, err := s.stagegate(nil, "ledger", "import", imp, "--data-dir", t.TempDir(), "--keys-dir", keys)
			if err == nil {
				t.Fatalf("ledger import accepted it:\n%s", out)
			}
		})
	}
	t.Run("receipt with a proof for another entry", func(t *testing.T) {
		r := map[string]json.RawMessage{}
		for k, v := range rc {
			r[k] = v
		}
		r["inclusionProof"] = otherProof
		rb, _ := json.Marshal(r)
		if out, err := verify(rb); err == nil || !strings.Contains(out, "inclusion proof") || !strings.Contains(out, "checkpoint") {
			t.Fatalf("receipt verify: %v\n%s", err, out)
		}
	})
}

// inclusionProof asks a server restarted on s's data directory for the
// inclusion proof of entry index in the whole ledger.
func inclusionProof(t *testing.T, s *server, index int) json.RawMessage {
	t.Helper()
	s2 := start(t, framework.WithDataDir(s.dataDir))
	size := s2.size()
	code, body := s2.do(http.MethodGet, "/v1/ledger/proof/inclusion?index="+strconv.Itoa(index)+"&size="+strconv.FormatUint(size, 10), s2.token, "", nil)
	if code != http.StatusOK {
		t.Fatalf("inclusion proof: %d %s", code, body)
	}
	s2.stop()
	return body
}

// canonical re-encodes an entry line the way the ledger does (struct
// field order), so that only the forged part differs.
func canonical(t *testing.T, line []byte) []byte {
	t.Helper()
	var e ledger.Entry
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	return b
}
