#!/usr/bin/env bash
# Reproduces one row group of docs/RESULTS.md: meta-trains a family with each algorithm on this machine
# (coordinator + 2 worker processes), then runs `metatrain eval` on the final checkpoint.
#
#   scripts/results.sh cartpole [reptile fomaml maml]     # CartPole physics family
#   scripts/results.sh goalnav  [reptile fomaml maml]     # GoalNavigation2D family
#
# EVAL_ONLY=1 re-runs only the evaluation on an existing run folder (its training times are kept);
# EVAL_TASKS, EVAL_BUDGET, EVAL_EVERY override the evaluation's size.
#
# Writes runs/results/FAMILY-ALGO/ (checkpoints, metrics.jsonl, eval.jsonl, eval-*.csv/.svg/.json) and
# prints wall-clock and CPU seconds (user + sys of every process, i.e. core-seconds) per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:?usage: scripts/results.sh cartpole|goalnav [algorithms...]}
shift
algorithms=("$@")
[ ${#algorithms[@]} -gt 0 ] || algorithms=(reptile fomaml maml)
case "$family" in
  cartpole) budget=${EVAL_BUDGET:-20000}; every=${EVAL_EVERY:-1000} ;;
  goalnav) budget=${EVAL_BUDGET:-2000}; every=${EVAL_EVERY:-100} ;;   # the inner loop's own budget
  *) echo "unknown family '$family' (cartpole or goalnav)" >&2; exit 2 ;;
esac
tasks=${EVAL_TASKS:-20}

scripts/bootstrap.sh
swift build -c release --product metatrain >&2
bin=.build/release/metatrain
TIMEFORMAT='%R %U %S'
for algo in "${algorithms[@]}"; do
  name="$family-$algo"
  config="benchmarks/results/$name.yaml"
  [ -f "$config" ] || { echo "no $config" >&2; exit 2; }
  dir="runs/results/$name"
  if [ "${EVAL_ONLY:-0}" = 1 ]; then
    [ -f "$dir/eval.json" ] || { echo "EVAL_ONLY: no earlier run in $dir" >&2; exit 2; }
    train=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["meta_training"]; print(t["wall_seconds"], t["cpu_seconds"], 0)' "$dir/eval.json")
  else
    rm -rf "$dir"; mkdir -p runs/results
    echo "== $name: meta-training ($config)" >&2
    train=$( { time "$bin" local --config "$config" --run-dir "$dir" --no-eval >"$dir.train.log" 2>&1; } 2>&1 )
  fi
  echo "== $name: evaluation ($tasks held-out tasks, budget $budget, every $every)" >&2
  evaluation=$( { time "$bin" eval --checkpoint "$dir" --tasks "$tasks" --budget "$budget" --every "$every" --json \
                    >"$dir/eval.json" 2>"$dir.eval.log"; } 2>&1 )
  read -r tw tu ts <<<"$train"
  read -r ew eu es <<<"$evaluation"
  python3 - "$dir" "$tw" "$tu" "$ts" "$ew" "$eu" "$es" <<'PY'
import json, sys
d, tw, tu, ts, ew, eu, es = sys.argv[1], *map(float, sys.argv[2:])
r = json.load(open(f"{d}/eval.json"))
r["meta_training"] = {"wall_seconds": tw, "cpu_seconds": tu + ts}
r["evaluation"] = {"wall_seconds": ew, "cpu_seconds": eu + es}
json.dump(r, open(f"{d}/eval.json", "w"), indent=1)
print(f"{d}: training {tw:.0f} s wall, {(tu+ts)/3600:.3f} core-h; evaluation {ew:.0f} s wall, {(eu+es)/3600:.3f} core-h")
for name, curve in r["inits"].items():
    print(f"  {name:10s} return at 0: {curve[0]['mean_return']:8.1f}  at end: {curve[-1]['mean_return']:8.1f}  steps to {r['target_return']}: {r['steps_to_target'][name]}")
PY
done
