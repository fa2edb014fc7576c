#!/usr/bin/env bash
# Gymnasium task families end to end on the release build, with real coordinator, worker and environment-server
# processes (test.sh runs it). Each check can fail:
#  1. `metatrain config` starts a gymnasium family once and prints its spaces.
#  2. The same seed gives the same θ (params_sha256) with 1 and with 3 workers.
#  3. An environment server that exits (os._exit), segfaults or hangs mid-task fails that slot with the reason in the
#     coordinator's log, is replaced, and the run ends with the θ of a run without the fault.
#  4. The shipped example families (LunarLander-v3 physics, a MiniGrid entry point) meta-train for a few
#     iterations; `metatrain eval` adapts on the MiniGrid run's held-out tasks and `export` writes its θ; `train`
#     runs plain DQN on a gymnasium id.
#  5. examples/swift-family, a package of its own that registers a Swift task family and runs MetaTrain.main(),
#     builds against the library products and meta-trains its family.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
METATRAIN_PYTHON=$(EXTRA_PACKAGES="box2d==2.3.10 minigrid==3.2.0" scripts/envserver-venv.sh)
export METATRAIN_PYTHON
swift build -c release --product metatrain >/dev/null
bin=$PWD/.build/release/metatrain
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0; failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && tail -20 "$2"; return 0; }

# A short version of a configuration: 3 tasks of 400 steps per iteration, no evaluation.
small() {
  sed -e 's/^  budget: [0-9]* *# env steps per task/  budget: 400/' -e 's/^  meta_batch: [0-9]*/  meta_batch: 3/' \
      -e 's/^  learning_starts: [0-9]*/  learning_starts: 100/' -e 's/^  tasks: [0-9]*/  tasks: 0/' \
      -e 's/^  interval: [0-9]*/  interval: 0/' "$1" >"$2"
}
# Runs `metatrain local` and prints the run's params_sha256 (the log in $work/NAME.log).
run() {  # name config local-args...
  local name=$1 config=$2; shift 2
  "$bin" local --config "$config" --run-dir "$work/$name" --no-eval "$@" >"$work/$name.log" 2>&1 || { echo "failed"; return 0; }
  grep -oE 'params_sha256 [0-9a-f]{64}' "$work/$name.log" | cut -d' ' -f2
}

small benchmarks/gymnasium-cartpole.yaml "$work/cartpole.yaml"
if "$bin" config "$work/cartpole.yaml" >"$work/config.log" 2>&1 && grep -q "CartPole-v1: observation Box" "$work/config.log" &&
   grep -q "→ 4 inputs, action Discrete(2) → 2 actions, 500 steps" "$work/config.log"; then
  pass "config starts the gymnasium family once and prints its spaces"
else fail "config check" "$work/config.log"; fi

one=$(run one "$work/cartpole.yaml" --workers 1 --iterations 3)
three=$(run three "$work/cartpole.yaml" --workers 3 --iterations 3)
if [ ${#one} -eq 64 ] && [ "$one" = "$three" ]; then
  pass "gymnasium CartPole: 1 and 3 workers give the same θ ($one)"
else fail "determinism across worker counts: '$one' vs '$three'" "$work/three.log"; fi

# The faulty walk of python/tests/faulty_envs.py: each fault strikes the first environment to reach step 150, once.
faulty() {  # fault step-timeout-ms
  cat >"$work/faulty-$1.yaml" <<YAML
run: {name: faulty-$1, seed: 3}
coordinator: {bind: "tcp://127.0.0.1:*", heartbeat_interval_ms: 500, liveness: 20}
meta: {algorithm: reptile, iterations: 3, meta_batch: 3}
task_family:
  env: gymnasium
  entry_point: faulty_envs:make
  kwargs: {fault: "$1", at_step: 150, once: "$work/once-$1"}
inner_loop: {budget: 300, learning_starts: 50, hidden_layers: [32]}
evaluation: {tasks: 0, interval: 0}
environment_server:
  allow_modules: [faulty_envs]
  python_path: [python/tests]
  step_timeout_ms: $2
YAML
}
faulty none 10000
clean=$(run clean "$work/faulty-none.yaml" --workers 2)
for fault in exit segfault hang; do
  faulty "$fault" 500
  got=$(run "fault-$fault" "$work/faulty-$fault.yaml" --workers 2)
  case $fault in exit) reason="exited with status 9" ;; segfault) reason="killed by signal 11" ;; hang) reason="did not answer step within 500 ms" ;; esac
  # The coordinator logs the failure it is told of; a hung slot may instead be taken back at its deadline and run
  # elsewhere, its worker logging the timeout (or ending with the run before it fires).
  if [ ${#clean} -eq 64 ] && [ "$got" = "$clean" ] && [ -e "$work/once-$fault" ] &&
     { grep -q "failed.*gymnasium environment faulty_envs:make: the environment server.*$reason" "$work/fault-$fault.log" ||
       { [ "$fault" = hang ] && grep -q "past the deadline" "$work/fault-$fault.log"; }; }; then
    pass "a server that ${fault}s mid-task fails the slot ($reason), is replaced, and the run ends with the fault-free θ"
  else fail "fault $fault: θ '$got' vs '$clean'" "$work/fault-$fault.log"; fi
done

# Numerics strict: a worker whose environment servers differ (here: another allowed-module set) is refused, with
# both identities named; the first worker set the run's. Waits for log lines, never for time alone.
wait_for() {  # file pattern: up to 120 s for a line matching pattern
  for _ in $(seq 1200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1
}
faulty none 10000
sed -i -e 's/iterations: 3,/iterations: 100000,/' "$work/faulty-none.yaml"
"$bin" coordinator --config "$work/faulty-none.yaml" --run-dir "$work/strict" >"$work/strict.log" 2>&1 &
coordinator=$!
wait_for "$work/strict/coordinator.endpoint" tcp || true
"$bin" worker --connect-file "$work/strict/coordinator.endpoint" --python "$METATRAIN_PYTHON" --allow-module faulty_envs \
  --python-path python/tests >"$work/strict-a.log" 2>&1 &
first=$!
wait_for "$work/strict.log" "set by the first worker" || true
"$bin" worker --connect-file "$work/strict/coordinator.endpoint" --python "$METATRAIN_PYTHON" --allow-module faulty_envs \
  --allow-module minigrid --python-path python/tests >"$work/strict-b.log" 2>&1 && refused=0 || refused=$?
kill -TERM "$coordinator" 2>/dev/null || true
wait "$coordinator" "$first" 2>/dev/null || true
if [ "$refused" -eq 3 ] && grep -q "environment servers differ" "$work/strict-b.log" && grep -q "minigrid 3.2.0" "$work/strict-b.log"; then
  pass "numerics strict refuses a worker whose environment servers differ (exit 3, both named)"
else fail "strict environment refusal (exit $refused)" "$work/strict-b.log"; fi

for family in lunarlander minigrid; do
  small "benchmarks/results/$family-reptile.yaml" "$work/$family.yaml"
  sha=$(run "$family" "$work/$family.yaml" --workers 2 --iterations 2)
  if [ ${#sha} -eq 64 ]; then pass "example family $family meta-trains"; else fail "example family $family" "$work/$family.log"; fi
done
if "$bin" eval --checkpoint "$work/minigrid" --tasks 2 --budget 300 --every 100 --json >"$work/eval.json" 2>"$work/eval.log" &&
   python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['tasks'] == 2 and d['task_specs'][0]['kind'] == 'gymnasium', d" "$work/eval.json"; then
  pass "metatrain eval adapts every init on the MiniGrid family's held-out tasks"
else fail "eval on minigrid" "$work/eval.log"; fi
if "$bin" export "$work/minigrid" --format safetensors --out "$work/minigrid.safetensors" >"$work/export.log" 2>&1 &&
   [ -s "$work/minigrid.safetensors" ] &&
   "$bin" train --env gymnasium:CartPole-v1 --steps 1500 --eval-episodes 2 --json >"$work/train.json" 2>"$work/train.log" &&
   python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['steps'] == 1500 and d['episodes'] > 0, d" "$work/train.json"; then
  pass "export writes the MiniGrid run's θ, and train runs DQN on gymnasium:CartPole-v1"
else fail "export or train" "$work/export.log"; tail -5 "$work/train.log"; fi

# A debug build of the example package (its own scratch folder: it builds metatrain again, as a user's would). From
# scratch each time, as on a fresh clone: SwiftPM keeps a path dependency's file list from an earlier build, and a
# source file added to metatrain since would be missing.
rm -rf .build/examples
if swift build --package-path examples/swift-family --scratch-path .build/examples >"$work/example-build.log" 2>&1; then
  example=.build/examples/debug/moving-target
  sed -e 's/^  budget: [0-9]* *# env steps per task/  budget: 300/' -e 's/^  tasks: [0-9]*/  tasks: 0/' \
      -e 's/^  interval: [0-9]*/  interval: 0/' examples/swift-family/cluster.yaml >"$work/swift.yaml"
  if "$example" config "$work/swift.yaml" 2>&1 | grep -q "Swift family swift (MovingTarget): 1 inputs, 3 actions" &&
     "$example" local --config "$work/swift.yaml" --run-dir "$work/swift" --iterations 2 --no-eval >"$work/swift.log" 2>&1 &&
     grep -q "params_sha256" "$work/swift.log"; then
    pass "examples/swift-family builds on the library products and meta-trains its Swift family"
  else fail "swift family example" "$work/swift.log"; fi
else fail "examples/swift-family does not build" "$work/example-build.log"; fi

echo "gymnasium-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
