#!/usr/bin/env bash
# The scaling model, calibrated and checked on this machine (docs/SCALING.md's figures).
#   scripts/scaling.sh [OUT_DIR]     (default docs/results/scaling)
#   env: CAPACITY=path/capacity.json to reuse a capacity run instead of running scripts/capacity.sh
# 1. `metatrain scaling calibrate`: the model's costs from microbenchmarks of the code the coordinator and the
#    workers run (decode and check a result, encode θ, the meta-update, a scheduler step, a send, the loopback).
# 2. scripts/capacity.sh: real runs with instant workers (1, 8, 64 workers × θ 5k, 70k, 1M).
# 3. Real training runs of the reference workload (benchmarks/reptile-reference.yaml: CartPole, 64-64 MLP,
#    2,000-step slots) with meta-batch 8 and 1, 2, 4, 8 workers; the 1-worker run's 56 slot times give the model its
#    slot-time distribution (the only thing taken from a run), the others check it.
# 4. One slot of the same workload with a 1,000-1,000 MLP (θ of 1M floats), 200 steps, scaled to 2,000 steps.
# 5. `metatrain scaling report`: model vs measured, and predictions for 1 … 1,024 workers.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/results/scaling}
scripts/bootstrap.sh
swift build -c release --product metatrain >/dev/null
bin=.build/release/metatrain
mkdir -p "$out"
work=$(mktemp -d /tmp/metatrain-scaling.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "scaling: calibrating" >&2
$bin scaling calibrate >"$out/costs.json"
if [ -n "${CAPACITY:-}" ]; then cp "$CAPACITY" "$out/capacity.json"; else scripts/capacity.sh "$work/capacity" >&2; cp "$work/capacity/capacity.json" "$work/capacity/capacity.md" "$out/"; fi

reference() {  # $1 hidden layers, $2 budget, $3 meta-batch, $4 iterations
  sed -e "s/^  hidden_layers: .*/  hidden_layers: $1/" -e "s/^  budget: .*/  budget: $2/" \
      -e "s/^  meta_batch: .*/  meta_batch: $3/" -e "s/^  iterations: .*/  iterations: $4/" \
      -e "s/^  learning_starts: .*/  learning_starts: $(( $2 / 4 ))/" benchmarks/reptile-reference.yaml
}
: >"$work/runs.jsonl"
for workers in 1 2 4 8; do
  echo "scaling: reference workload, $workers worker(s)" >&2
  # One worker runs 8 iterations: its 56 steady slots give the model the slot-time spread.
  reference "[64, 64]" 2000 8 $(( workers == 1 ? 8 : 4 )) >"$work/ref-$workers.yaml"
  $bin local --config "$work/ref-$workers.yaml" --workers "$workers" --run-dir "$work/ref-$workers" --no-eval --log-level warning >&2
  python3 - "$work/ref-$workers/metrics.jsonl" "$workers" >>"$work/runs.jsonl" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
steady = lines[1:]  # the first iteration includes start-up and registration
print(json.dumps({"theta_floats": lines[-1]["parameters"], "workers": int(sys.argv[2]), "meta_batch": len(lines[-1]["slot_seconds"]),
                  "iteration_seconds": statistics.median(l["seconds"] for l in steady),
                  # The mean apply-to-apply cycle, as scripts/capacity.sh reports it and the model predicts it.
                  "cycle_seconds": (lines[-1]["elapsed_seconds"] - lines[0]["elapsed_seconds"]) / len(steady),
                  "slot_seconds": [s for l in steady for s in l["slot_seconds"]]}))
PY
done
echo "scaling: one 1M-float slot" >&2
reference "[1000, 1000]" 200 1 2 >"$work/large.yaml"
$bin local --config "$work/large.yaml" --workers 1 --run-dir "$work/large" --no-eval --log-level warning >&2
python3 - "$work/runs.jsonl" "$work/large/metrics.jsonl" "$out/runs.json" >"$work/slots" <<'PY'
import json, math, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
single = next(r for r in runs if r["workers"] == 1)
logs = [math.log(s) for s in single["slot_seconds"]]
median, spread = math.exp(statistics.median(logs)), statistics.pstdev(logs)
for r in runs:
    r["model_slot_seconds"], r["model_slot_spread"] = median, spread
    r["measured_slot_seconds_median"] = statistics.median(r.pop("slot_seconds"))
json.dump({"rows": runs}, open(sys.argv[3], "w"), indent=1)
large = [s for l in (json.loads(x) for x in open(sys.argv[2])) for s in l["slot_seconds"]]
print(median, statistics.median(large) * 10)
PY
read -r small large <"$work/slots"
echo "scaling: reference slot ${small} s (θ 4,610), 1M-float slot ${large} s (2,000 steps)" >&2
$bin scaling report --costs "$out/costs.json" --capacity "$out/capacity.json" --runs "$out/runs.json" \
  --slot-seconds-small "$small" --slot-seconds-large "$large" --out "$out"
