#!/usr/bin/env bash
cd /work/main
for round in 1 2 3; do
  for row in "[64, 64]:64:120" "[64, 64]:8:120" "[256, 256]:8:40"; do
    IFS=: read -r layers workers its <<<"$row"
    for b in new new2; do
      /tmp/alt/run.sh /tmp/metatrain-$b $b "$layers" $workers $its | sed "s/^{/{\"round\": $round, \"utc\": \"$(date -u +%H:%M:%S)\", /"
    done
  done
done
