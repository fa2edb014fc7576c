#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): set up, build, run every test and the learning checks.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

# The gymnasium fixtures are copied into the test target; the copy must match the shared oracle.
shared=../shared/fixtures/gymnasium
copy=Tests/EnvironmentsTests/Fixtures/gymnasium
if [ -d "$shared" ]; then
  for f in "$shared"/*.json; do
    cmp -s "$f" "$copy/$(basename "$f")" || {
      echo "test.sh: $copy/$(basename "$f") differs from $f (or is missing): copy the fixtures anew" >&2; exit 1; }
  done
fi

swift build --build-tests
swift test 2>&1 | tee /tmp/metatrain-swift-test.log | grep -vE '^(◇|↳) ' || true
# `swift test` output is filtered above for length; its exit status is what counts.
grep -qE '^✔ Test run with [0-9]+ tests? .*passed' /tmp/metatrain-swift-test.log || {
  echo "test.sh: swift test failed; full log in /tmp/metatrain-swift-test.log" >&2
  grep -E '✘' /tmp/metatrain-swift-test.log | head -50 >&2
  exit 1
}

scripts/learning-check.sh
