#!/usr/bin/env bash
# usage: config.sh MODE META_BATCH ITERATIONS [BASE]  -> cluster.yaml on stdout
# benchmarks/reptile-reference.yaml (or BASE) with meta_batch and iterations set; MODE pipelined adds meta.pipeline: true.
mode=$1 batch=$2 its=$3 base=${4:-benchmarks/reptile-reference.yaml}
sed -e "s/^  meta_batch: .*/  meta_batch: $batch/" -e "s/^  iterations: .*/  iterations: $its/" "$base" |
  if [ "$mode" = pipelined ]; then sed -e 's/^  algorithm: reptile/  algorithm: reptile\n  pipeline: true/'; else cat; fi
