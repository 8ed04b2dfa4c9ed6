package ledger

import (
	"encoding/binary"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// stateRules numbers the rules by which entries make the state index
// (stateBatch.apply). 1: a revocation reaches the platforms of an index.
// 2: it also reaches the indexes that contain the revoked digest, an index
// promotion does not lift a platform's revocation, and each platform keeps
// its own labels. 3: a promotion's mark says whether it is foreign, which
// the freshness of a registry source decides on. The number is stored in the meta bucket (absent: 1), so
// that an index built by an older stagegate is rebuilt, not trusted: under
// the old rules a platform's record has no back-reference to its indexes,
// and revoking the platform would leave them admitted.
const stateRules = 3

var keyStateRules = []byte("state-rules") // be64 stateRules of the state bucket

// rebuildChunk bounds the entries applied per transaction of a rebuild, so
// that its dirty pages stay few whatever the ledger size.
const rebuildChunk = 16384

func txStateRules(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyStateRules)
	if len(v) != 8 {
		return 1
	}
	return binary.BigEndian.Uint64(v)
}

// upgradeState rebuilds the state index of a writable ledger whose index
// was made by older rules, from its entries, and records the rules. It
// runs in Open, before anyone can read, in transactions of rebuildChunk
// entries; the rules are recorded by the last one, so a crash midway
// leaves the old number and the next Open starts again from nothing.
func upgradeState(db *bolt.DB, log *slog.Logger) error {
	var rules, size uint64
	if err := db.View(func(tx *bolt.Tx) error {
		rules, size = txStateRules(tx), txSize(tx)
		return nil
	}); err != nil {
		return err
	}
	if rules == stateRules {
		return nil
	}
	if rules > stateRules {
		return fmt.Errorf("ledger: state index built with rules %d, newer than this stagegate's %d: run the newer stagegate", rules, stateRules)
	}
	if size > 0 {
		log.Info("ledger: rebuilding the state index with the current rules", "entries", size, "from", rules, "to", stateRules)
	}
	err := rebuild(db, [][]byte{bucketState}, false, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyStateRules, be64(stateRules))
	})
	if err != nil {
		return fmt.Errorf("ledger: rebuild state index: %w", err)
	}
	return nil
}
