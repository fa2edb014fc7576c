#!/usr/bin/env bash
# Fuzzes the coordinator's port (and a worker) with the hardening tests' fuzzers.
#   scripts/fuzz.sh           the CI size (3,000 messages)
#   scripts/fuzz.sh --long    300,000 messages (or set METATRAIN_FUZZ_MESSAGES)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if [ "${1:-}" = --long ]; then export METATRAIN_FUZZ_MESSAGES=${METATRAIN_FUZZ_MESSAGES:-300000}; fi
swift build --build-tests
swift test --skip-build --filter 'fuzzedCoordinatorStaysUpAndThetaIsUnaffected|workerSurvivesGarbageFromTheCoordinator'
