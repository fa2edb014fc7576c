#!/usr/bin/env bash
# Coordinator capacity: one coordinator and N worker processes that return every slot at once
# (`--compute none`), so the figures are the coordinator's (and the loopback's), not training's.
#   scripts/capacity.sh [OUT_DIR]          (default docs/results/scaling, beside the scaling model it checks)
#   env: SIZES="5k 70k 1m"  WORKERS="1 8 64"  META_BATCH=64  LARGE_BATCH=1024 (one more run: 5k θ, 64 workers, this batch)
#        REPEATS=3 (rounds over every configuration; each row is the round with the median cycle)
# For each θ size and worker count it reports, over the iterations after every worker has joined:
# slots/s and the mean apply-to-apply cycle (also the median of metrics.jsonl's `seconds`, the same span per
# iteration), the coordinator's bookkeeping per iteration (writing each update's record, after the next hand-out),
# coordinator CPU per slot (and its loop thread's share: the rest is libzmq's I/O thread), the workers' CPU per
# slot (over the same window, from each worker's CPU timeline), the cores all of them kept busy, bytes sent
# and received per iteration, θ bytes sent per iteration against θ's size × the workers holding an assignment, θ
# encodings per iteration, and peak RSS.
# Writes OUT_DIR/capacity.json and OUT_DIR/capacity.md; `metatrain scaling` reads the JSON to validate its model.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/results/scaling}
sizes=${SIZES:-5k 70k 1m}
workers_list=${WORKERS:-1 8 64}
default_batch=${META_BATCH:-64}
large_batch=${LARGE_BATCH:-1024}
scripts/bootstrap.sh
swift build -c release --product metatrain >/dev/null
mkdir -p "$out"
work=$(mktemp -d /tmp/metatrain-capacity.XXXXXX)
trap 'rm -rf "$work"' EXIT
rows="$work/rows.jsonl"
: >"$rows"
repeats=${REPEATS:-3}
runs=""
for size in $sizes; do for workers in $workers_list; do runs="$runs $size:$workers:$default_batch"; done; done
[ "$large_batch" -gt 0 ] && runs="$runs 5k:64:$large_batch"
# Round by round over every configuration, so that a slow phase of a shared machine (this VM's own speed moves by 2×
# within minutes) falls on different configurations in different rounds; each row is then its median round.
for round in $(seq "$repeats"); do
for spec in $runs; do
  IFS=: read -r size workers meta_batch <<<"$spec"
  # CartPole's 4 inputs and 2 actions: [64, 64] is 4,610 floats, [256, 256] 67,586, [1000, 1000] 1,008,002.
  case $size in
    5k) layers="[64, 64]"; iterations=$(( 60 * 64 / meta_batch + 4 )) ;;
    70k) layers="[256, 256]"; iterations=30 ;;
    1m) layers="[1000, 1000]"; iterations=16 ;;
    *) echo "capacity: unknown size $size (5k, 70k or 1m)" >&2; exit 2 ;;
  esac
  {
    run="$work/$size-$workers-$meta_batch-r$round"
    mkdir -p "$run"
    cat >"$run/c.yaml" <<YAML
run: {name: capacity, seed: 3, checkpoint_interval: 100000}
coordinator: {bind: "tcp://127.0.0.1:*", heartbeat_interval_ms: 1000, liveness: 30}
meta: {algorithm: reptile, iterations: $iterations, meta_batch: $meta_batch}
task_family: {env: cartpole}
inner_loop: {budget: 24, hidden_layers: $layers, batch_size: 8, learning_starts: 16, buffer_capacity: 64}
evaluation: {tasks: 0}
YAML
    mkdir -p "$run/wcpu"   # each worker writes its CPU timeline here (METATRAIN_WORKER_CPU_DIR)
    env METATRAIN_WORKER_CPU_DIR="$run/wcpu" .build/release/metatrain local --config "$run/c.yaml" --workers "$workers" --compute none --run-dir "$run/run" \
        --no-eval --log-level warning >"$run/local.log" 2>&1 || { cat "$run/local.log" >&2; exit 1; }
    python3 - "$run/run/metrics.jsonl" "$size" "$workers" "$meta_batch" "$run/wcpu" "$round" >>"$rows" <<'PY'
import bisect, glob, json, os, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
size, workers, meta_batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# Steady state: from the iteration after the last worker joined.
first = next((i for i, l in enumerate(lines) if l["workers"] >= workers), len(lines) - 1) + 1
if first >= len(lines):
    sys.exit(f"capacity: {sys.argv[1]}: no iteration after the last of {workers} workers joined: raise the iterations")
steady, before = lines[first:], lines[first - 1]
slots = len(steady) * meta_batch
def cpu_at(samples, t):  # a worker's CPU at time t, linear between its samples (before the first: its first)
    times = [s[0] for s in samples]
    i = bisect.bisect_right(times, t)
    if i == 0: return samples[0][1]
    if i == len(samples): return samples[-1][1]
    (t0, c0), (t1, c1) = samples[i - 1], samples[i]
    return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
# The workers' CPU over the window the cycle is timed in (from the update before the first steady iteration to the
# last update), from each worker's own CPU samples at every job and message, on the machine's monotonic clock: their
# start-up, registration and the iterations before the window are left out, as they are from the coordinator's CPU.
# (Until 2026-12-04 it was the difference of a run's and a shorter run's totals from the first job to the exit, which
# also held the iterations before the window: 1.2-1.4x the machine's 2 vCPUs' worth at θ 1M with 64 workers.)
# A worker samples at its jobs and sends, not at every wake-up, so up to one slot's messages per worker at the window's
# edges fall outside it: θ 1M runs 16 iterations, so that each worker's edge is a small share of its slots.
timelines = []
for path in glob.glob(os.path.join(sys.argv[5], "worker-*.cpu")):
    samples = [tuple(map(float, l.split())) for l in open(path).read().splitlines()[1:] if l.strip()]
    if samples: timelines.append(samples)
if "monotonic_seconds" not in before or len(timelines) != workers:
    sys.exit(f"capacity: {sys.argv[1]}: {len(timelines)} of {workers} workers wrote a CPU timeline, or no monotonic stamps")
start, end = before["monotonic_seconds"], steady[-1]["monotonic_seconds"]
workers_cpu = sum(cpu_at(s, end) - cpu_at(s, start) for s in timelines)
workers_cpu_source = "the workers' CPU timelines over the timed window"
# The apply-to-apply cycle (`elapsed_seconds` stamps each update; `seconds` is the same span). The coordinator writes
# each update's record (metrics, TensorBoard, status.json) after handing out the next iteration; `bookkeeping_seconds`
# is the running total of that writing, up to the line before.
seconds = steady[-1]["elapsed_seconds"] - before["elapsed_seconds"]
bookkeeping = (steady[-1]["bookkeeping_seconds"] - before["bookkeeping_seconds"]) / len(steady)
cpu = steady[-1]["coordinator_cpu_seconds"] - before["coordinator_cpu_seconds"]
# The loop thread's own share (metrics from before it have none); the rest is libzmq's I/O thread.
loop_cpu = (steady[-1]["coordinator_loop_cpu_seconds"] - before["coordinator_loop_cpu_seconds"]
            if "coordinator_loop_cpu_seconds" in steady[-1] else None)
theta = lines[-1]["parameters"]
holders = min(workers, meta_batch)
tensor = statistics.mean(l["tensor_bytes_sent"] for l in steady)
encodings = (steady[-1]["tensor_encodings"] - before["tensor_encodings"]) / len(steady)
print(json.dumps({
    "round": int(sys.argv[6]),
    "size": size, "theta_floats": theta, "workers": workers, "meta_batch": meta_batch, "iterations_measured": len(steady),
    "slots_per_second": slots / seconds, "iteration_seconds": statistics.median(l["seconds"] for l in steady),
    "cycle_seconds": seconds / len(steady),
    "bookkeeping_seconds_per_iteration": bookkeeping,
    "coordinator_cpu_us_per_slot": cpu / slots * 1e6,
    "coordinator_loop_cpu_us_per_slot": None if loop_cpu is None else loop_cpu / slots * 1e6,
    "workers_cpu_us_per_slot": workers_cpu / slots * 1e6, "workers_cpu_source": workers_cpu_source,
    # Coordinator and workers together, in cores' worth over the window: at most the machine's cores.
    "cores_busy": (cpu + workers_cpu) / seconds,
    "bytes_sent_per_iteration": statistics.mean(l["bytes_sent"] for l in steady),
    "bytes_received_per_iteration": statistics.mean(l["bytes_received"] for l in steady),
    "tensor_bytes_per_iteration": tensor, "theta_bytes_times_holders": theta * 4 * holders,
    "tensor_bytes_ratio": tensor / (theta * 4 * holders), "tensor_encodings_per_iteration": encodings,
    "peak_rss_mib": lines[-1]["coordinator_max_rss_kb"] / 1024,
    "slots_applied": lines[-1]["slots_applied"], "workers_declared_dead": lines[-1]["workers_declared_dead"],
}))
PY
    tail -1 "$rows" | python3 -c 'import json, sys
r = json.load(sys.stdin)
print("capacity: round {}: θ {:,} floats, {} worker(s): {:,.0f} slots/s, {:.0f} µs coordinator CPU/slot, θ bytes {:.4f} × θ × holders".format(
    r["round"], r["theta_floats"], r["workers"], r["slots_per_second"], r["coordinator_cpu_us_per_slot"], r["tensor_bytes_ratio"]))'
  }
done
done
python3 - "$rows" "$out" "$repeats" <<'PY'
import json, platform, subprocess, sys
rounds = [json.loads(l) for l in open(sys.argv[1])]
rows = []
for spec in dict.fromkeys((r["theta_floats"], r["workers"], r["meta_batch"]) for r in rounds):
    # The round with the median cycle stands for the configuration (all its figures from that one run); every
    # round's cycle and CPU are kept beside it.
    mine = sorted((r for r in rounds if (r["theta_floats"], r["workers"], r["meta_batch"]) == spec), key=lambda r: r["cycle_seconds"])
    row = dict(mine[(len(mine) - 1) // 2])
    row["cycle_seconds_rounds"] = [r["cycle_seconds"] for r in mine]
    row["coordinator_cpu_us_per_slot_rounds"] = [r["coordinator_cpu_us_per_slot"] for r in mine]
    rows.append(row)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
machine = {"cpu": cpu, "cores": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
           "kernel": platform.release()}
json.dump({"machine": machine, "rows": rows}, open(f"{sys.argv[2]}/capacity.json", "w"), indent=1)
with open(f"{sys.argv[2]}/capacity.md", "w") as f:
    f.write(f"Coordinator capacity (`scripts/capacity.sh`, workers `--compute none`) on "
            f"{machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}; coordinator and workers share the cores; "
            f"each row is the median of {sys.argv[3]} rounds by cycle (the rounds' cycles in the last column).\n\n")
    f.write("| θ floats | workers | meta-batch | slots/s | cycle s (mean) | iteration s (median) | bookkeeping ms/iteration | coordinator CPU µs/slot | of it, its loop thread | workers' CPU µs/slot | cores busy | MB sent/iter | MB received/iter | θ bytes ÷ (θ × holders) | θ encodings/iter | peak RSS MiB | rounds' cycles s |\n")
    f.write("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    for r in rows:
        f.write(f"| {r['theta_floats']:,} | {r['workers']} | {r['meta_batch']} | {r['slots_per_second']:,.0f} | {r['cycle_seconds']:.4f} | "
                f"{r['iteration_seconds']:.4f} | {r['bookkeeping_seconds_per_iteration'] * 1e3:.2f} | "
                f"{r['coordinator_cpu_us_per_slot']:,.0f} | "
                f"{'—' if r['coordinator_loop_cpu_us_per_slot'] is None else format(r['coordinator_loop_cpu_us_per_slot'], ',.0f')} | "
                f"{r['workers_cpu_us_per_slot']:,.0f} | {r['cores_busy']:.2f} | {r['bytes_sent_per_iteration'] / 1e6:.2f} | "
                f"{r['bytes_received_per_iteration'] / 1e6:.2f} | {r['tensor_bytes_ratio']:.4f} | "
                f"{r['tensor_encodings_per_iteration']:.2f} | {r['peak_rss_mib']:.0f} | "
                f"{' / '.join(format(c, '.4f') for c in r['cycle_seconds_rounds'])} |\n")
print(open(f"{sys.argv[2]}/capacity.md").read())
ok = all(r["tensor_bytes_ratio"] < 1.001 and r["workers_declared_dead"] == 0 for r in rounds)
print(f"capacity: {'ok' if ok else 'FAILED'}: θ bytes per iteration are θ × workers holding an assignment, no worker declared dead")
sys.exit(0 if ok else 1)
PY
