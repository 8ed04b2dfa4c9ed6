#!/usr/bin/env bash
# Runs every fuzz target of the module for N seconds each (default 10).
# Targets are found with `go test -list`, so a new Fuzz function is picked up
# without editing this script. A crasher is written by go test to the
# package's testdata/fuzz/<FuzzName>/; fix the bug and keep the file.
#
#   hack/fuzz.sh [seconds] [package pattern]
#
# FUZZ_PARALLEL sets the number of fuzzing workers (default 1: the fuzz
# targets run one after another and share the machine with the build).
# Each fuzz package's TestMain bounds the minimization of new inputs
# (internal/testutil/fuzzseed.MinimizeLimit): with go's default of 60 s, a
# run of a few seconds spends itself shrinking its first new input. Set
# FUZZ_MINIMIZE (e.g. 60s) to minimize further.
set -euo pipefail

secs="${1:-10}"
pattern="${2:-./...}"
parallel="${FUZZ_PARALLEL:-1}"
cd "$(dirname "$0")/.."

case "$secs" in
'' | *[!0-9]*) echo "usage: hack/fuzz.sh [seconds] [package pattern]" >&2; exit 2 ;;
esac

# `go test -list` prints the matching names, then "ok <pkg> ..." per package.
targets="$(go test -vet=off -run '^$' -list '^Fuzz' "$pattern" | awk '
	/^Fuzz/ { names = names " " $1; next }
	/^ok / { if (names != "") print $2 names; names = "" }
')"
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz targets found in $pattern" >&2
	exit 1
fi

failed=0
while read -r pkg names; do
	for name in $names; do
		echo "fuzz: $pkg $name for ${secs}s"
		log=$(mktemp)
		set +e
		go test -vet=off -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" -parallel "$parallel" \
			${FUZZ_MINIMIZE:+-fuzzminimizetime "$FUZZ_MINIMIZE"} "$pkg" 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		set -e
		if [ "$rc" -ne 0 ]; then
			if grep -q 'Failing input written to' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
				echo "fuzz: $pkg $name FAILED; the crasher is in its testdata/fuzz/$name/" >&2
				failed=1
			else
				# Go's fuzzer can report the end of -fuzztime itself as
				# "context deadline exceeded" while a worker is mid-input;
				# no input failed and none was written: not a finding.
				echo "fuzz: $pkg $name: timed out at the end of its run without a failing input; not a finding" >&2
			fi
		fi
		rm -f "$log"
	done
done <<<"$targets"
exit "$failed"
