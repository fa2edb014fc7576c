#!/usr/bin/env bash
# Does pipelining change what Reptile learns? (docs/prereg/pipeline.md) Meta-trains CartPole physics with
# benchmarks/results/cartpole-reptile.yaml, synchronous and pipelined, for each seed, and scores each final θ on the
# 20 held-out test tasks (`metatrain eval --inits meta`, 2,000 steps, scored every 1,000).
# usage: [OUT=DIR] docs/results/pipeline/learning.sh "1 2 3 4 5"  -> DIR/MODE-seedS.json (default docs/results/pipeline/learning)
set -euo pipefail
cd "$(dirname "$0")/../../.."
seeds=${1:-1 2 3 4 5}
bin=.build/release/metatrain
out=${OUT:-docs/results/pipeline/learning}
mkdir -p "$out"
work=$(mktemp -d /tmp/pipeline-learning.XXXX)
trap 'rm -rf "$work"' EXIT
for seed in $seeds; do
  for mode in sync pipelined; do
    d=$work/$mode-$seed
    # The configuration as it stands (60 iterations × 8 tasks), only meta.pipeline added for the pipelined runs.
    docs/results/pipeline/config.sh $mode 8 60 benchmarks/results/cartpole-reptile.yaml >"$d.yaml"
    start=$(date +%s)
    $bin local --config "$d.yaml" --seed "$seed" --workers 2 --run-dir "$d" --no-eval --log-level warning >"$d.log" 2>&1
    trained=$(date +%s)
    $bin eval --checkpoint "$d" --tasks 20 --budget 2000 --every 1000 --inits meta --json >"$d.eval.log" 2>&1
    cp "$d"/eval-iter*.json "$out/$mode-seed$seed.json"
    echo "$mode seed $seed: trained $((trained - start)) s, evaluated $(( $(date +%s) - trained )) s, θ $(python3 -c "import json;print(json.loads(open('$d/metrics.jsonl').readlines()[-1])['params_sha256'][:16])")" >&2
  done
done
