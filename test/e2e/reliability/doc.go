// Package reliability proves stagegate's durability promises end to end:
// it runs `stagegate serve` as a process against the CNCF distribution
// registry and SIGKILLs it, floods it with concurrent writes, takes its
// registry away, fills its disk and shuts it down under load, checking
// after each that nothing acknowledged was lost and that the ledger still
// verifies.
//
// The crash test runs STAGEGATE_SOAK_CYCLES kill/restart cycles (default
// 100); `make soak` runs
//
//	STAGEGATE_SOAK_CYCLES=1000 go test ./test/e2e/reliability/ -run Crash -timeout 2h
//
// and STAGEGATE_CRASH_SEED replays the kill schedule of a logged seed.
package reliability
