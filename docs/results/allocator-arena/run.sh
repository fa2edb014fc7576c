#!/usr/bin/env bash
# usage: run.sh BIN LABEL LAYERS WORKERS ITERS -> one JSON line
bin=$1 label=$2 layers=$3 workers=$4 its=$5
d=$(mktemp -d /tmp/alt/r.XXXX)
cat >$d/c.yaml <<YAML
run: {name: capacity, seed: 3, checkpoint_interval: 100000}
coordinator: {bind: "tcp://127.0.0.1:*", heartbeat_interval_ms: 1000, liveness: 30}
meta: {algorithm: reptile, iterations: $its, meta_batch: 64}
task_family: {env: cartpole}
inner_loop: {budget: 24, hidden_layers: $layers, batch_size: 8, learning_starts: 16, buffer_capacity: 64}
evaluation: {tasks: 0}
YAML
TIMEFORMAT='%U %S %R'
mkdir -p $d/w; { time env METATRAIN_WORKER_CPU_DIR=$d/w $bin local --config $d/c.yaml --workers $workers --compute none --run-dir $d/run --no-eval --log-level warning >$d/log 2>&1; } 2>$d/cpu
python3 - $d/run/metrics.jsonl $d/cpu "$label" "$layers" $workers $d/w <<'PY'
import json,sys,glob
L=[json.loads(l) for l in open(sys.argv[1])]
u,s,r=map(float,open(sys.argv[2]).read().split())
steady=L[1:]
slots=sum(len(l['slot_seconds']) for l in steady)
coord=L[-1]['coordinator_cpu_seconds']
w=[tuple(map(float,open(f).read().split())) for f in glob.glob(sys.argv[6]+'/*.cpu')]
wcpu=sum(a for a,b in w); wjobs=sum(b for a,b in w)
allslots=sum(len(l['slot_seconds']) for l in L)
print(json.dumps({"bin":sys.argv[3],"layers":sys.argv[4],"workers":int(sys.argv[5]),
 "slots_per_s": slots/(L[-1]['elapsed_seconds']-L[0]['elapsed_seconds']),
 "coord_cpu_us_per_slot": coord/allslots*1e6, "workers_cpu_us_per_slot":wcpu/wjobs*1e6, "wall": r, "coord_rss_mib": L[-1]["coordinator_max_rss_kb"]/1024}))
PY
rm -rf $d
