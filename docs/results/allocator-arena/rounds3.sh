#!/usr/bin/env bash
# old (b95f805) / arena (one malloc arena) / inplace (arena + worker decodes θ in place), alternated, 2 rounds
for round in 1 2; do
for cfg in "[64, 64]:1:60" "[64, 64]:8:60" "[64, 64]:64:60" "[256, 256]:1:30" "[256, 256]:8:30" "[256, 256]:64:30" "[1000, 1000]:1:10" "[1000, 1000]:8:10" "[1000, 1000]:64:10"; do
  IFS=: read -r layers workers its <<<"$cfg"
  for b in old new inplace; do /tmp/alt/run.sh /tmp/metatrain-$b $b "$layers" $workers $its; done
done; done
