#!/usr/bin/env bash
# Load: many workers with a tiny inner loop against one coordinator, and a ~1M-parameter network.
#   scripts/load-test.sh [WORKERS] [ITERATIONS]      (defaults: 64 workers, 3 iterations)
# Checks that no slot is lost or applied twice (slots_applied), no worker is declared dead, and
# reports the coordinator's CPU time per message and its peak memory (from metrics.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-64}
iterations=${2:-3}
scripts/bootstrap.sh
swift build -c release --product metatrain >/dev/null
work=$(mktemp -d /tmp/metatrain-load.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat >"$work/load.yaml" <<YAML
run: {name: load, seed: 3, checkpoint_interval: 1000}
coordinator: {bind: "tcp://127.0.0.1:*", heartbeat_interval_ms: 1000, liveness: 10, backup_after_median: 0}
meta: {algorithm: reptile, iterations: $iterations, meta_batch: $workers}
task_family: {env: cartpole}
inner_loop: {budget: 24, hidden_layers: [1000, 1000], batch_size: 8, learning_starts: 16, buffer_capacity: 64}
evaluation: {tasks: 0}
YAML
start=$(date +%s.%N)
.build/release/metatrain local --config "$work/load.yaml" --workers "$workers" --run-dir "$work/run" --no-eval --log-level warning
python3 - "$work/run/metrics.jsonl" "$workers" "$iterations" "$start" <<'PY'
import json, sys, time
lines = [json.loads(l) for l in open(sys.argv[1])]
workers, iterations, start = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
last = lines[-1]
messages = sum(l["messages_received"] + l["messages_sent"] for l in lines)
sent = sum(l["bytes_sent"] for l in lines)
print(f"load: {workers} workers, θ of {last['parameters']:,} float32 ({last['parameters'] * 4 / 1e6:.1f} MB), {len(lines)} iterations of {workers} slots")
print(f"load: slots applied {last['slots_applied']} (expected {iterations * workers}), workers declared dead {last['workers_declared_dead']}")
print(f"load: coordinator CPU {last['coordinator_cpu_seconds']:.2f} s for {messages} messages = {last['coordinator_cpu_seconds'] / messages * 1e6:.0f} us/message; peak RSS {last['coordinator_max_rss_kb'] / 1024:.0f} MiB; {sent / 1e6:.0f} MB sent")
print(f"load: wall {time.time() - start:.1f} s including start-up")
ok = last["slots_applied"] == iterations * workers and last["workers_declared_dead"] == 0 and len(lines) == iterations
print(f"load-test: {1 if ok else 0} passed, {0 if ok else 1} failed")
sys.exit(0 if ok else 1)
PY
