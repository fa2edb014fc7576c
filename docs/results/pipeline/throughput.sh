#!/usr/bin/env bash
# Alternated sync / pipelined runs of the reference workload (CartPole, 64-64 MLP, 2,000-step slots) on this
# machine, with the scaling model's prediction for each run from the run's own slot times (docs/SCALING.md,
# "Pipelined meta-iterations"). usage: docs/results/pipeline/throughput.sh ROUNDS > throughput.jsonl
# Each line: mode, workers, meta-batch, round, the mean apply-to-apply cycle (second to last-but-one update), slots/s,
# the run's slot-time median and log-sd, and the model's s/iteration for the same (shared 2 vCPUs, no link).
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds=${1:-3}
bin=.build/release/metatrain
costs=docs/results/scaling-emerald-final/costs-fitted.json
work=$(mktemp -d /tmp/pipeline-throughput.XXXX)
trap 'rm -rf "$work"' EXIT
for round in $(seq 1 "$rounds"); do
  for cfg in "2 2 25" "2 8 8" "8 8 8"; do
    read -r workers batch its <<<"$cfg"
    for mode in sync pipelined; do
      d=$work/$mode-$workers-$batch-$round
      docs/results/pipeline/config.sh $mode "$batch" "$its" >"$d.yaml"
      $bin local --config "$d.yaml" --workers "$workers" --run-dir "$d" --no-eval --log-level warning >"$d.log" 2>&1
      read -r median sd < <(python3 - "$d/metrics.jsonl" <<'PY'
import json, math, statistics, sys
L = [json.loads(l) for l in open(sys.argv[1])][1:]
logs = [math.log(s) for l in L for s in l["slot_seconds"]]
print(math.exp(statistics.median(logs)), statistics.pstdev(logs))
PY
)
      flag=""; [ $mode = pipelined ] && flag=--pipelined
      model=$($bin scaling predict --costs $costs --theta 4610 --meta-batch "$batch" --workers "$workers" --slot-seconds "$median" \
                --slot-spread "$sd" --shared-cores 2.02 --link-gbit 8000000 --iterations 8 $flag | python3 -c 'import json,sys; print(json.load(sys.stdin)["iterationSeconds"])')
      python3 - "$d/metrics.jsonl" $mode "$workers" "$batch" "$round" "$median" "$sd" "$model" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
# From the second update to the one before the last: a pipelined run starts iterations 0 and 1 at once, and its last
# iteration has none after it to fill its tail; a long run has neither. The same window for both modes.
cycle = (L[-2]["elapsed_seconds"] - L[1]["elapsed_seconds"]) / (len(L) - 3)
print(json.dumps({"mode": sys.argv[2], "workers": int(sys.argv[3]), "meta_batch": int(sys.argv[4]), "round": int(sys.argv[5]),
                  "cycle_seconds": cycle, "slots_per_second": int(sys.argv[4]) / cycle,
                  "slot_median_seconds": float(sys.argv[6]), "slot_log_sd": float(sys.argv[7]), "model_seconds": float(sys.argv[8]),
                  "params_sha256": L[-1].get("params_sha256", "")}))
PY
    done
  done
done
