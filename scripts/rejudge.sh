#!/usr/bin/env bash
# Runs a claim of docs/prereg/rejudge-headline.md (issue 36): a validation run, each init's adaptation protocol tuned on
# its validation tasks (`metatrain eval --tune`), then the test on fresh seeds on both kernel classes.
#
#   scripts/rejudge.sh goalrev|esmaml32|distilladv|lunarlander [tune|test|test-portable|report|report-portable|all]
#
# goalrev       claim 1: Reptile on reversed controls, seeds 31-40
# esmaml32      claim 2: ES-MAML-32 on the arc, seeds 41-50, with a Reptile row on the same seeds
# distilladv    claim 3: advantage distillation on the arc, seeds 51-60, with a Reptile row on the same seeds
# lunarlander   generality: Reptile on LunarLander physics through gymnasium, seeds 61-70, with the evaluation and
#               the smaller grid of the prereg's third amendment (budget 50,000, target return 0)
#
# tune          meta-trains validation run 101 and tunes every init's protocol on 60 of its validation tasks (20 for
#               lunarlander); for a
#               claim with a Reptile row, Reptile's validation run 101 too, tuning its meta θ only (the baselines'
#               protocols are the claim's). Writes docs/results/rejudge/CLAIM[-reptile]-tuning.json and
#               benchmarks/results/CLAIM[-reptile]-rejudge.eval
# test          the claim's seeds (SEEDS=… runs a subset, e.g. half on each core) through scripts/results.sh with that
#               protocol and CLAIM-rejudge.criteria (default kernel), then `report`
# test-portable the same under METATRAIN_KERNEL=portable
# report        each seed's eval JSON gzipped into docs/results/rejudge/ and the pooled `metatrain compare` reports
#               (once every seed has run)
# METATRAIN_BIN=PATH runs a binary built before instead of this tree's release build (see scripts/results.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
claim=${1:?usage: scripts/rejudge.sh goalrev|esmaml32|distilladv|lunarlander [tune|test|test-portable|report|report-portable|all]}
stage=${2:-all}
row=""
# The evaluation of the first two amendments (the goal families' budget, every 50 steps, 5 episodes, 50 test tasks per
# seed, 60 validation tasks, the family's own target); lunarlander sets its own below.
budget=8000; every=50; episodes=5; test_tasks=50; validation_tasks=60; target=""; screen=10; keep=8
grid="learning_rate=0.0003,0.001,0.003 start_epsilon=1,0.5,0.2 exploration_fraction=0.1,0.25,0.5 ez_max_repeat=0,16 target_update_interval=25,100 learning_starts=50,200"
case "$claim" in
  goalrev) family=goalrev; algo=reptile; seeds="31 32 33 34 35 36 37 38 39 40" ;;
  esmaml32) family=goalarc; algo=esmaml32; row=reptile; seeds="41 42 43 44 45 46 47 48 49 50" ;;
  distilladv) family=goalarc; algo=distilladv; row=reptile; seeds="51 52 53 54 55 56 57 58 59 60" ;;
  lunarlander)
    family=lunarlander; algo=reptile; seeds="61 62 63 64 65 66 67 68 69 70"
    budget=50000; every=2500; episodes=3; test_tasks=20; validation_tasks=20; target=0; screen=5; keep=4
    grid="learning_rate=0.0003,0.001 exploration_fraction=0.1,0.25 ez_max_repeat=0,16 target_update_interval=100,250"
    # Its environment servers need Box2D: the venv scripts/results.sh makes for this family (not for a report).
    if [ "$stage" != report ] && [ "$stage" != report-portable ]; then
      METATRAIN_PYTHON=$(EXTRA_PACKAGES="box2d==2.3.10" scripts/envserver-venv.sh)
      export METATRAIN_PYTHON
    fi ;;
  *) echo "rejudge.sh: no pre-registered re-judging of '$claim' (goalrev, esmaml32, distilladv or lunarlander)" >&2; exit 2 ;;
esac
validation=101
inits=meta,random,multitask,multitask-head
out=docs/results/rejudge
mkdir -p "$out" runs/rejudge
scripts/bootstrap.sh
if [ -n "${METATRAIN_BIN:-}" ]; then
  bin=$METATRAIN_BIN
else
  swift build -c release --product metatrain >&2
  bin=.build/release/metatrain
fi

# The tuning of one validation run: TUNE_ALGO TUNE_INITS NAME (NAME-tuning.json is the committed record).
tune_run() {
  local run_algo=$1 run_inits=$2 name=$3
  local run=runs/rejudge/$family-$run_algo-val$validation
  rm -rf "$run"
  echo "== $name: validation run $validation ($family-$run_algo)" >&2
  "$bin" local --config "benchmarks/results/$family-$run_algo.yaml" --run-dir "$run" --seed "$validation" --no-eval >"$run.train.log" 2>&1
  echo "== $name: tuning $run_inits on $validation_tasks validation tasks ($grid)" >&2
  "$bin" eval --checkpoint "$run" --split validation --tasks "$validation_tasks" --budget "$budget" --every "$every" \
    --episodes "$episodes" ${target:+--target "$target"} --inits "$run_inits" \
    --tune "$grid" --tune-screen "$screen" --tune-keep "$keep" --json >"$run.tuning.json" 2>"$run.tuning.log"
  python3 - "$run.tuning.json" "$out/$name-tuning.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
# The committed record: the grid, every score, the choice, and the validation medians of the chosen protocols.
json.dump({"tuning": report["tuning"], "adaptation": report["adaptation"], "steps_to_target": report["steps_to_target"],
           "tasks_reaching_target": report.get("tasks_reaching_target"), "kernel": report["kernel"], "cpu": report["cpu"],
           "checkpoint": report["checkpoint"]}, open(sys.argv[2], "w"), indent=1)
PY
}

# Writes benchmarks/results/NAME-rejudge.eval from the chosen settings: meta's from META_TUNING, the rest from TUNING.
write_protocol() {
  python3 - "$1" "$2" "benchmarks/results/$3-rejudge.eval" "$inits" <<'PY'
import json, sys
tuning, meta_tuning, path, inits = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
chosen = json.load(open(tuning))["tuning"]["chosen"]
chosen["meta"] = json.load(open(meta_tuning))["tuning"]["chosen"]["meta"]
sources = tuning if tuning == meta_tuning else f"{meta_tuning} (meta) and {tuning} (the baselines)"
with open(path, "w") as f:
    f.write(f"# docs/prereg/rejudge-headline.md: each init's protocol as tuned by scripts/rejudge.sh on validation run 101\n")
    f.write(f"# ({sources}); written by the script, not by hand.\n")
    f.write(f"--inits {','.join(inits)}\n")
    for key in chosen["meta"]:
        f.write(f"--{key.replace('_', '-')} " + ",".join(f"{i}={chosen[i][key]:g}" for i in inits) + "\n")
print(open(path).read())
PY
}

if [ "$stage" = tune ] || [ "$stage" = all ]; then
  tune_run "$algo" "$inits" "$claim"
  write_protocol "$out/$claim-tuning.json" "$out/$claim-tuning.json" "$claim"
  if [ -n "$row" ]; then
    tune_run "$row" meta "$claim-$row"
    write_protocol "$out/$claim-tuning.json" "$out/$claim-$row-tuning.json" "$claim-$row"
  fi
fi

report() {  # TAG: gzip each seed's eval JSON and pool them, once every seed has run
  local tag=$1 a jsons
  for a in "$algo" $row; do
    jsons=()
    for s in $seeds; do
      local f="runs/results/$family-$a-$tag-seed$s/eval.json"
      [ -f "$f" ] || { echo "== $claim $a $tag: seed $s has not run yet; no pooled report" >&2; continue 2; }
      gzip -9 -c "$f" >"$out/$family-$a-$tag-seed$s.eval.json.gz"
      jsons+=("$f")
    done
    local name="$claim-$tag"
    [ "$a" = "$algo" ] || name="$claim-$a-row-$tag"
    # The claim's criteria file holds its floors (and lunarlander's step-0 rule, amendment 3a), as results.sh reads it.
    "$bin" compare "${jsons[@]}" $(grep -v '^#' "benchmarks/results/$claim-rejudge.criteria") --out "$out" --name "$name" || true
    if [ "$claim" = goalrev ]; then
      "$bin" compare "${jsons[@]}" $(grep -v '^#' "benchmarks/results/$family.criteria") --out "$out" --name "$name-original-floors" >/dev/null || true
    fi
  done
}

test_stage() {  # TAG [environment…]
  local tag=$1; shift
  local a protocol
  # One log per stream of seeds, so two streams running side by side do not interleave their lines.
  local stream=""
  [ -z "${SEEDS:-}" ] || stream="-seeds-$(echo $SEEDS | tr ' ' '-')"
  for a in "$algo" $row; do
    protocol="benchmarks/results/$claim-rejudge.eval"
    [ "$a" = "$algo" ] || protocol="benchmarks/results/$claim-$a-rejudge.eval"
    env "$@" METATRAIN_BIN="$bin" SEEDS="${SEEDS:-$seeds}" EVAL_TASKS="$test_tasks" EVAL_BUDGET="$budget" \
      EVAL_EVERY="$every" EVAL_EPISODES="$episodes" EVAL_TARGET="$target" PROTOCOL="$protocol" \
      CRITERIA="benchmarks/results/$claim-rejudge.criteria" TAG="$tag" scripts/results.sh "$family" "$a" \
      | tee -a "$out/$claim-$tag$stream.log"
  done
  report "$tag"
}
case "$stage" in
  test) test_stage rejudge ;;
  test-portable) test_stage rejudge-portable METATRAIN_KERNEL=portable ;;
  report) report rejudge ;;
  report-portable) report rejudge-portable ;;
  all) test_stage rejudge; test_stage rejudge-portable METATRAIN_KERNEL=portable ;;
  tune) ;;
  *) echo "rejudge.sh: unknown stage '$stage'" >&2; exit 2 ;;
esac
