#!/usr/bin/env bash
cd /work/main
for round in 1 2 3; do
  for row in "[64, 64]:64:120" "[64, 64]:8:120" "[256, 256]:64:40" "[1000, 1000]:64:8"; do
    IFS=: read -r layers workers its <<<"$row"
    for b in old new; do
      /tmp/alt/run.sh /tmp/metatrain-$b $b "$layers" $workers $its | sed "s/^{/{\"round\": $round, \"utc\": \"$(date -u +%H:%M:%S)\", /"
    done
  done
done
