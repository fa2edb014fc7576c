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

# The committed protobuf-c code must be what scripts/gen-proto.sh makes from proto/.
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
protoc-c --proto_path=proto --c_out="$gen" proto/metatrain.proto
cmp -s "$gen/metatrain.pb-c.h" Sources/MetaTrainProto/include/metatrain.pb-c.h &&
  cmp -s "$gen/metatrain.pb-c.c" Sources/MetaTrainProto/metatrain.pb-c.c || {
  echo "test.sh: Sources/MetaTrainProto is stale: run scripts/gen-proto.sh and commit" >&2; exit 1; }

# The second protobuf implementation for the interoperability test: Python's, in a venv under .build (pinned to
# the protobuf that reads Debian's protoc 3.21 output).
interop=.build/interop
if [ ! -x "$interop/venv/bin/python" ] || ! "$interop/venv/bin/python" -c "import google.protobuf" 2>/dev/null; then
  python3 -m venv "$interop/venv"
  "$interop/venv/bin/pip" install -q --disable-pip-version-check "protobuf==4.21.12"
fi
# The readers users load our files with, in a venv of their own (they need a newer protobuf): safetensors + numpy
# and onnxruntime (`metatrain export`), tensorboard (the coordinator's event files).
readers=.build/readers
if [ ! -x "$readers/venv/bin/python" ] ||
   ! "$readers/venv/bin/python" -c "import safetensors, numpy, onnxruntime, tensorboard" 2>/dev/null; then
  python3 -m venv "$readers/venv"
  "$readers/venv/bin/pip" install -q --disable-pip-version-check "numpy==2.4.6" "safetensors==0.8.0" \
    "onnxruntime==1.31.1" "tensorboard==2.21.0"
fi
export METATRAIN_READERS_PYTHON="$PWD/$readers/venv/bin/python"
mkdir -p "$interop/generated"
protoc --proto_path=proto --python_out="$interop/generated" proto/metatrain.proto
export METATRAIN_INTEROP_PYTHON="$PWD/$interop/venv/bin/python" METATRAIN_INTEROP_GENERATED="$PWD/$interop/generated"

swift build --build-tests
# `swift test`'s exit status is what counts; its output is filtered for length (the full log is kept).
set +e
swift test 2>&1 | tee /tmp/metatrain-swift-test.log | grep -vE '^(◇|↳) '
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "test.sh: swift test failed (exit $status); full log in /tmp/metatrain-swift-test.log" >&2
  grep -E '✘' /tmp/metatrain-swift-test.log | head -50 >&2
  exit 1
fi
# A run that selected no test passes too: require a healthy count.
ran=$(grep -oE 'Test run with [0-9]+ tests?' /tmp/metatrain-swift-test.log | grep -oE '[0-9]+' | tail -1)
[ "${ran:-0}" -ge 100 ] || { echo "test.sh: swift test ran ${ran:-0} tests; expected at least 100" >&2; exit 1; }

scripts/learning-check.sh

# Multi-host scenarios in network namespaces (skips itself where namespaces cannot be made), and load.
scripts/netns-cluster.sh all
scripts/load-test.sh 64 2

# Shell completions and man pages generate and install (into a scratch prefix).
prefix=$(mktemp -d)
scripts/install-completions.sh "$prefix" >/dev/null
bash -n "$prefix/share/bash-completion/completions/metatrain"
[ -s "$prefix/share/man/man1/metatrain.export.1" ] || { echo "test.sh: no man page for metatrain export" >&2; exit 1; }
rm -rf "$prefix"
echo "completions: 1 passed, 0 failed"

# Deployment files validate offline: Kubernetes schemas (kubernetes-validate --strict), the ConfigMap's
# cluster.yaml, and every option the containers pass (learning-check.sh built the release binary).
scripts/validate-deploy.sh .build/release/metatrain >/dev/null
echo "deploy: 1 passed, 0 failed"

# A real single-node Slurm: the batch script preempted mid-run, requeued, resumed to the uninterrupted θ.
scripts/slurm-test.sh
