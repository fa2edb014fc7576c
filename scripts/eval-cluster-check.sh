#!/usr/bin/env bash
# Checks that `metatrain eval --coordinator` gives the local table: meta-trains one of docs/RESULTS.md's
# configurations, evaluates the final checkpoint on this machine's threads, then on a local cluster
# (`coordinator --resume --serve` + WORKERS worker processes), and compares the two JSON reports.
#
#   scripts/eval-cluster-check.sh [cartpole-reptile] [WORKERS=2]
#
# Writes runs/eval-check/NAME/ and prints the wall time of each evaluation and whether the reports are equal
# (all fields but wall-clock seconds). Exits 1 when they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-cartpole-reptile}
workers=${2:-2}
config="benchmarks/results/$name.yaml"
[ -f "$config" ] || { echo "no $config" >&2; exit 2; }
case "$name" in
  cartpole-*) args=(--tasks 20 --budget 20000 --every 1000) ;;
  *) args=(--tasks 20 --budget 2000 --every 100) ;;
esac
scripts/bootstrap.sh
swift build -c release --product metatrain >&2
bin=.build/release/metatrain
out=runs/eval-check/$name
run=$out/run
rm -rf "$out"; mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
TIMEFORMAT='%R'
echo "== meta-training $config" >&2
"$bin" local --config "$config" --run-dir "$run" --no-eval >"$out/train.log" 2>&1
echo "== eval on $(nproc) local threads" >&2
local_s=$( { time "$bin" eval --checkpoint "$run" "${args[@]}" --json --out "$out/local" >"$out/local.json" 2>"$out/local.log"; } 2>&1 )
rm -f "$run/coordinator.endpoint"
"$bin" coordinator --config "$config" --resume "$run" --serve --bind 'tcp://127.0.0.1:*' >"$out/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -s "$run/coordinator.endpoint" ] && break; sleep 0.1; done
endpoint=$(cat "$run/coordinator.endpoint")
for i in $(seq "$workers"); do
  "$bin" worker --connect "$endpoint" >"$out/worker-$i.log" 2>&1 &
  pids+=($!)
done
echo "== eval on $workers worker(s) through $endpoint" >&2
cluster_s=$( { time "$bin" eval --checkpoint "$run" "${args[@]}" --json --coordinator "$endpoint" --out "$out/cluster" >"$out/cluster.json" 2>"$out/cluster.log"; } 2>&1 )
python3 - "$out" "$local_s" "$cluster_s" <<'PY'
import json, sys
out, local_s, cluster_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
a, b = json.load(open(f"{out}/local.json")), json.load(open(f"{out}/cluster.json"))
a.pop("seconds"); b.pop("seconds")
equal = a == b
print(f"{out}: local {local_s:.1f} s wall, cluster {cluster_s:.1f} s wall; reports equal: {equal}")
print("steps to target:", b["steps_to_target"])
sys.exit(0 if equal else 1)
PY
