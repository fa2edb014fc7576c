#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): set up, build, run every test and the learning checks.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

# The environment servers' Python: a venv with gymnasium, numpy and python/ in .build/envserver (the Swift tests
# start servers with it, found there), and the server's own tests. Not exported as METATRAIN_PYTHON: every worker
# the process tests start would then describe its Python at start-up, a second of CPU each.
envserver_python=$(scripts/envserver-venv.sh)
(cd python && "$envserver_python" -m pytest -q -p no:cacheprovider)

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
# Here nothing may be skipped: the tests that need a Python reader skip outside test.sh, and a missing Python must
# fail the run, not turn it green. The three are also named, so a renamed one cannot drop out unnoticed.
if grep -E 'Test .* skipped' /tmp/metatrain-swift-test.log >&2; then
  echo "test.sh: the tests above were skipped; scripts/test.sh runs every test" >&2; exit 1
fi
for t in pythonReadsWhatWeWriteAndWeReadWhatItWrites tensorBoardReadsEveryScalarWithItsStepAndValue \
         exportedThetaGivesMetatrainsQValuesInPythonLibraries; do
  grep -qE "Test $t\(\) passed" /tmp/metatrain-swift-test.log || {
    echo "test.sh: $t did not run and pass (full log in /tmp/metatrain-swift-test.log)" >&2; exit 1; }
done

scripts/learning-check.sh

# Gymnasium task families end to end: determinism across worker counts, servers that die or hang mid-run, the
# example families (LunarLander physics, a MiniGrid entry point) and eval on one.
scripts/gymnasium-check.sh

# Multi-host scenarios in network namespaces (skips itself where namespaces cannot be made), and load.
scripts/netns-cluster.sh all
scripts/load-test.sh 64 2

# The capacity measurement and the scaling model's report, end to end on a small grid: the workers' CPU timelines and
# the coordinator's monotonic stamps line up (CPU over the timed window fits in this machine's cores), and the report
# checks the model against the runs with each run's own CPU. No timing is judged here (docs/SCALING.md has the runs).
smoke=$(mktemp -d)
SIZES=5k WORKERS="1 8" REPEATS=1 LARGE_BATCH=0 scripts/capacity.sh "$smoke" >/dev/null
stored=docs/results/scaling-zen5-timeline
.build/release/metatrain scaling report --costs "$stored/costs.json" --capacity "$smoke/capacity.json" --runs "$stored/runs.json" \
  --slot-seconds-small 0.027 --slot-seconds-large 5 --out "$smoke/report" >/dev/null
python3 - "$smoke" "$(nproc)" <<'PY'
import json, sys
rows = json.load(open(f"{sys.argv[1]}/capacity.json"))["rows"]
cores = int(sys.argv[2])
bad = [r for r in rows if not (0 < r["workers_cpu_us_per_slot"] and 0 < r["cores_busy"] <= cores * 1.15)]
assert len(rows) == 2 and not bad, f"capacity-smoke: CPU outside the machine's {cores} cores over the window: {bad or rows}"
checked = json.load(open(f"{sys.argv[1]}/report/scaling.json"))["validation"]
assert all((c.get("own_cpu_seconds") or 0) > 0 for c in checked if c["kind"].startswith("instant")), checked
PY
rm -rf "$smoke"
echo "capacity-smoke: 1 passed, 0 failed"

# Shell completions and man pages generate and install (into a scratch prefix).
prefix=$(mktemp -d)
scripts/install-completions.sh "$prefix" >/dev/null
bash -n "$prefix/share/bash-completion/completions/metatrain"
[ -s "$prefix/share/man/man1/metatrain.export.1" ] || { echo "test.sh: no man page for metatrain export" >&2; exit 1; }
# The manual spells θ and its kin in ASCII (the generator drops non-ASCII characters), and the options with a fixed
# set of values complete to them.
grep -q "checkpoint's theta as" "$prefix/share/man/man1/metatrain.export.1" \
  || { echo "test.sh: metatrain.export.1 lost its theta" >&2; exit 1; }
grep -q "'safetensors'" "$prefix/share/bash-completion/completions/metatrain" \
  && grep -q "'notice'" "$prefix/share/bash-completion/completions/metatrain" \
  || { echo "test.sh: --format or --log-level does not complete to its values" >&2; exit 1; }
.build/release/metatrain --version | grep -qE "^metatrain [0-9.]+ \(wire protocol [0-9]+, checkpoint format [0-9]+\)$" \
  || { echo "test.sh: metatrain --version does not say the release, protocol and checkpoint format" >&2; exit 1; }
rm -rf "$prefix"
echo "completions: 1 passed, 0 failed"

# Deployment files validate offline: Kubernetes schemas (kubernetes-validate --strict), the ConfigMap's
# cluster.yaml, and every option the containers pass (learning-check.sh built the release binary).
scripts/validate-deploy.sh .build/release/metatrain

# A real single-node Slurm: the batch script preempted mid-run, requeued, resumed to the uninterrupted θ.
scripts/slurm-test.sh
