#!/usr/bin/env bash
# Reproduces one row group of docs/RESULTS.md: meta-trains a family with each algorithm on this machine
# (coordinator + 2 worker processes), then runs `metatrain eval` on the final checkpoint.
#
#   scripts/results.sh cartpole [reptile fomaml maml]     # CartPole physics family
#   scripts/results.sh goalnav  [reptile fomaml maml]     # GoalNavigation2D family (dense, goals in a square)
#   scripts/results.sh goalarc  [reptile distill distilladv context context1 fomaml esmaml esmaml32]   # sparse goals on an arc (docs/prereg/goalarc-*.md)
#   scripts/results.sh goalarc90 reptile                   # sparse goals on a quarter circle (docs/prereg/goalarc90-reptile.md)
#   scripts/results.sh goalarc150 reptile                  # sparse goals on a 150° arc (validation so far: docs/RESULTS.md)
#   scripts/results.sh goalrev reptile                     # sparse goals on a 30° arc, controls reversed in half the tasks (docs/prereg/goalrev-reptile.md)
#   scripts/results.sh cartpole|goalnav distill context   # distillation and the context DQN on the other families
#   scripts/results.sh acrobot reptile                     # a control: Acrobot physics (docs/prereg/acrobot-control.md)
#   scripts/results.sh lunarlander reptile                 # gymnasium's LunarLander-v3, gravity/wind/turbulence per task
#   scripts/results.sh minigrid reptile                    # a MiniGrid room with a hidden goal cell (an entry point)
#
# SEEDS="1 2 3" meta-trains (and evaluates, with a multitask baseline per seed) once per seed, in
# runs/results/FAMILY-ALGO-seedS, and pools the evaluations with `metatrain compare` (bootstrap CIs) into
# runs/results/FAMILY-ALGO-compare.{md,json,csv,svg}; without SEEDS each config's own run.seed is used once.
# SPLIT=validation evaluates on the validation tasks (for tuning; the pre-registered runs use test).
# EVAL_ONLY=1 re-runs only the evaluation on an existing run folder (its training times are kept);
# EVAL_TASKS, EVAL_BUDGET, EVAL_EVERY, EVAL_EPISODES override the evaluation's size and EVAL_TARGET its target return; benchmarks/results/FAMILY.eval, when
# present, holds further `metatrain eval` arguments (the family's pre-registered adaptation protocol) and
# benchmarks/results/FAMILY.criteria the `metatrain compare` thresholds (PROTOCOL=FILE and CRITERIA=FILE name
# others; TAG=NAME keeps such a variant's run folders apart). METATRAIN_BIN=PATH runs that binary without building.
#
# Writes runs/results/FAMILY-ALGO[-seedS]/ (checkpoints, metrics.jsonl, eval.json, eval-*.csv/.svg/.json) and
# prints wall-clock and CPU seconds (user + sys of every process, i.e. core-seconds) per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:?usage: scripts/results.sh cartpole|goalnav|goalarc|goalarc90|goalarc150|goalrev|goalfar|goalcorner|goalring|acrobot|lunarlander|minigrid [algorithms...]}
shift
algorithms=("$@")
[ ${#algorithms[@]} -gt 0 ] || algorithms=(reptile fomaml maml)
case "$family" in
  cartpole) budget=${EVAL_BUDGET:-20000}; every=${EVAL_EVERY:-1000} ;;
  goalnav) budget=${EVAL_BUDGET:-2000}; every=${EVAL_EVERY:-100} ;;   # the inner loop's own budget
  goalarc) budget=${EVAL_BUDGET:-8000}; every=${EVAL_EVERY:-250} ;;   # the inner loop's own budget
  goalfar) budget=${EVAL_BUDGET:-16000}; every=${EVAL_EVERY:-500} ;;  # the inner loop's own budget
  goalarc90|goalarc150|goalrev|goalcorner|goalring) budget=${EVAL_BUDGET:-8000}; every=${EVAL_EVERY:-250} ;;  # the inner loop's own budget
  acrobot) budget=${EVAL_BUDGET:-30000}; every=${EVAL_EVERY:-1000} ;;  # a control: from scratch reaches -100 in 20-38k
  lunarlander) budget=${EVAL_BUDGET:-20000}; every=${EVAL_EVERY:-1000}; extra_python="box2d==2.3.10" ;;
  minigrid) budget=${EVAL_BUDGET:-6000}; every=${EVAL_EVERY:-250}; extra_python="minigrid==3.2.0" ;;
  *) echo "unknown family '$family' (cartpole, goalnav, goalarc, goalarc90, goalarc150, goalrev, goalfar, goalcorner, goalring, acrobot, lunarlander or minigrid)" >&2; exit 2 ;;
esac
# Gymnasium families run in environment servers: a venv with gymnasium and what the family needs.
if [ -n "${extra_python:-}" ]; then
  METATRAIN_PYTHON=$(EXTRA_PACKAGES="$extra_python" scripts/envserver-venv.sh)
  export METATRAIN_PYTHON
fi
tasks=${EVAL_TASKS:-20}
split=${SPLIT:-test}
protocol=${PROTOCOL:-benchmarks/results/$family.eval}
criteria_file=${CRITERIA:-benchmarks/results/$family.criteria}
extra=()
[ -f "$protocol" ] && read -r -a extra <<<"$(grep -v '^#' "$protocol" | tr '\n' ' ')"
criteria=()
[ -f "$criteria_file" ] && read -r -a criteria <<<"$(grep -v '^#' "$criteria_file" | tr '\n' ' ')"
if [ -n "${SEEDS:-}" ] && [ ${#criteria[@]} -eq 0 ]; then
  echo "note: no criteria in $criteria_file (CRITERIA=FILE names one): the pooled comparison will print no verdict" >&2
fi
tag=${TAG:-}   # names a variant's run folders (e.g. TAG=gentle with PROTOCOL=...): FAMILY-ALGO-TAG-seedS
seeds=(${SEEDS:-""})
[ ${#seeds[@]} -gt 0 ] || seeds=("")

scripts/bootstrap.sh
# METATRAIN_BIN=PATH runs a binary built before (a copy kept aside, so that a long run is not changed by a rebuild
# of the working tree under it); otherwise this tree's release build.
if [ -n "${METATRAIN_BIN:-}" ]; then
  bin=$METATRAIN_BIN
else
  swift build -c release --product metatrain >&2
  bin=.build/release/metatrain
fi
TIMEFORMAT='%R %U %S'
for algo in "${algorithms[@]}"; do
 config="benchmarks/results/$family-$algo.yaml"
 [ -f "$config" ] || { echo "no $config" >&2; exit 2; }
 jsons=()
 for seed in "${seeds[@]}"; do
  name="$family-$algo${tag:+-$tag}${seed:+-seed$seed}"
  dir="runs/results/$name"
  out="$dir/eval${SPLIT:+-$split}.json"
  if [ "${EVAL_ONLY:-0}" = 1 ]; then
    [ -d "$dir/checkpoints" ] || { echo "EVAL_ONLY: no earlier run in $dir" >&2; exit 2; }
    train=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])).get("meta_training", {}); print(t.get("wall_seconds", 0), t.get("cpu_seconds", 0), 0)' "$dir/eval.json" 2>/dev/null || echo "0 0 0")
  else
    rm -rf "$dir"; mkdir -p runs/results
    echo "== $name: meta-training ($config${seed:+, seed $seed})" >&2
    train=$( { time "$bin" local --config "$config" --run-dir "$dir" ${seed:+--seed "$seed"} --no-eval >"$dir.train.log" 2>&1; } 2>&1 )
  fi
  echo "== $name: evaluation ($tasks $split tasks, budget $budget, every $every${extra[*]:+, ${extra[*]}})" >&2
  evaluation=$( { time "$bin" eval --checkpoint "$dir" --tasks "$tasks" --budget "$budget" --every "$every" --split "$split" \
                    ${EVAL_EPISODES:+--episodes "$EVAL_EPISODES"} ${EVAL_TARGET:+--target "$EVAL_TARGET"} \
                    "${extra[@]}" --json >"$out" 2>"$dir.eval.log"; } 2>&1 )
  jsons+=("$out")
  read -r tw tu ts <<<"$train"
  read -r ew eu es <<<"$evaluation"
  python3 - "$out" "$tw" "$tu" "$ts" "$ew" "$eu" "$es" <<'PY'
import json, sys
f, tw, tu, ts, ew, eu, es = sys.argv[1], *map(float, sys.argv[2:])
r = json.load(open(f))
r["meta_training"] = {"wall_seconds": tw, "cpu_seconds": tu + ts}
r["evaluation"] = {"wall_seconds": ew, "cpu_seconds": eu + es}
json.dump(r, open(f, "w"), indent=1)
print(f"{f}: training {tw:.0f} s wall, {(tu+ts)/3600:.3f} core-h; evaluation {ew:.0f} s wall, {(eu+es)/3600:.3f} core-h")
for name, curve in r["inits"].items():
    print(f"  {name:10s} return at 0: {curve[0]['mean_return']:8.1f}  at end: {curve[-1]['mean_return']:8.1f}  steps to {r['target_return']}: {r['steps_to_target'][name]}")
PY
 done
 if [ -n "${SEEDS:-}" ]; then
  echo "== $family-$algo: ${#jsons[@]} seeds pooled (metatrain compare)" >&2
  "$bin" compare "${jsons[@]}" "${criteria[@]}" --out runs/results --name "$family-$algo${tag:+-$tag}-compare${SPLIT:+-$split}"
 fi
done
