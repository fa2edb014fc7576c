#!/usr/bin/env bash
# Fuzzes the coordinator's port (and a worker) with the hardening tests' fuzzers.
#   scripts/fuzz.sh           the CI size (3,000 messages)
#   scripts/fuzz.sh --long    300,000 messages (or set METATRAIN_FUZZ_MESSAGES)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if [ "${1:-}" = --long ]; then export METATRAIN_FUZZ_MESSAGES=${METATRAIN_FUZZ_MESSAGES:-300000}; fi
swift build --build-tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift test --skip-build --filter 'fuzzedCoordinatorStaysUpAndThetaIsUnaffected|workerSurvivesGarbageFromTheCoordinator' 2>&1 | tee "$log" || status=$?
[ "$status" -eq 0 ] || { echo "fuzz: swift test failed (exit $status)" >&2; exit "$status"; }
# A filter that matches nothing (a renamed test) runs zero tests and passes: that is a failure here.
ran=$(grep -oE 'Test run with [0-9]+ tests?' "$log" | grep -oE '[0-9]+' | tail -1)
[ "${ran:-0}" -eq 2 ] || { echo "fuzz: expected the 2 fuzz tests to run, ran ${ran:-0}" >&2; exit 1; }
