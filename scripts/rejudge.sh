#!/usr/bin/env bash
# Runs a claim of docs/prereg/rejudge-headline.md (issue 36): a validation run, each init's adaptation protocol tuned on
# its validation tasks (`metatrain eval --tune`), then the test on fresh seeds on both kernel classes.
#
#   scripts/rejudge.sh goalrev [tune|test|test-portable|all]     (default: all)
#
# tune          meta-trains validation run 101 and tunes every init's protocol on 60 of its validation tasks;
#               writes docs/results/rejudge/FAMILY-tuning.json and benchmarks/results/FAMILY-rejudge.eval
# test          SEEDS 31-40 through scripts/results.sh with that protocol and FAMILY-rejudge.criteria (default kernel)
# test-portable the same under METATRAIN_KERNEL=portable
# Each test's per-seed eval JSON (gzipped) and compare report go to docs/results/rejudge/.
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:?usage: scripts/rejudge.sh goalrev [tune|test|test-portable|all]}
stage=${2:-all}
case "$family" in
  goalrev) algo=reptile; validation=101; seeds="31 32 33 34 35 36 37 38 39 40" ;;
  *) echo "rejudge.sh: no pre-registered re-judging of '$family'" >&2; exit 2 ;;
esac
grid="learning_rate=0.0003,0.001,0.003 start_epsilon=1,0.5,0.2 exploration_fraction=0.1,0.25,0.5 ez_max_repeat=0,16 target_update_interval=25,100 learning_starts=50,200"
inits=meta,random,multitask,multitask-head
bin=.build/release/metatrain
out=docs/results/rejudge
mkdir -p "$out" runs/rejudge
scripts/bootstrap.sh
swift build -c release --product metatrain >&2

if [ "$stage" = tune ] || [ "$stage" = all ]; then
  run=runs/rejudge/$family-$algo-val$validation
  rm -rf "$run"
  echo "== $family: validation run $validation" >&2
  "$bin" local --config "benchmarks/results/$family-$algo.yaml" --run-dir "$run" --seed "$validation" --no-eval >"$run.train.log" 2>&1
  echo "== $family: tuning $inits on 60 validation tasks ($grid)" >&2
  "$bin" eval --checkpoint "$run" --split validation --tasks 60 --budget 8000 --every 50 --inits "$inits" \
    --tune "$grid" --tune-screen 10 --tune-keep 8 --json >"$run.tuning.json" 2>"$run.tuning.log"
  python3 - "$run.tuning.json" "$out/$family-tuning.json" "benchmarks/results/$family-rejudge.eval" "$inits" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
t = report["tuning"]
# The committed record: the grid, every score, the choice, and the validation medians of the chosen protocols.
json.dump({"tuning": t, "adaptation": report["adaptation"], "steps_to_target": report["steps_to_target"],
           "tasks_reaching_target": report.get("tasks_reaching_target"), "kernel": report["kernel"], "cpu": report["cpu"],
           "checkpoint": report["checkpoint"]}, open(sys.argv[2], "w"), indent=1)
with open(sys.argv[3], "w") as f:
    f.write("# docs/prereg/rejudge-headline.md: each init's protocol as tuned by scripts/rejudge.sh on validation run 101\n")
    f.write(f"# ({sys.argv[2]}); written by the script, not by hand.\n")
    f.write(f"--inits {sys.argv[4]}\n")
    for line in t["arguments"]:
        f.write(line + "\n")
print(open(sys.argv[3]).read())
PY
fi

test_stage() {  # TAG [environment…]
  local tag=$1; shift
  env "$@" SEEDS="$seeds" EVAL_TASKS=50 EVAL_EVERY=50 PROTOCOL="benchmarks/results/$family-rejudge.eval" \
    CRITERIA="benchmarks/results/$family-rejudge.criteria" TAG="$tag" scripts/results.sh "$family" "$algo" | tee "$out/$family-$tag.log"
  local jsons=()
  for s in $seeds; do
    gzip -9 -c "runs/results/$family-$algo-$tag-seed$s/eval.json" >"$out/$family-$algo-$tag-seed$s.eval.json.gz"
    jsons+=("runs/results/$family-$algo-$tag-seed$s/eval.json")
  done
  "$bin" compare "${jsons[@]}" --require-ratio 2 --require-seed-ci-low 1.5 --out "$out" --name "$family-$tag" >/dev/null || true
  "$bin" compare "${jsons[@]}" $(grep -v '^#' "benchmarks/results/$family.criteria") --out "$out" --name "$family-$tag-original-floors" >/dev/null || true
}
if [ "$stage" = test ] || [ "$stage" = all ]; then test_stage rejudge; fi
if [ "$stage" = test-portable ] || [ "$stage" = all ]; then test_stage rejudge-portable METATRAIN_KERNEL=portable; fi
