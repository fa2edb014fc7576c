#!/usr/bin/env bash
# Learning checks that can fail, in a release build (debug Swift is ~20x slower):
#  1. DQN (preset "solver") on default CartPole reaches a mean return >= 195 over 20 consecutive
#     training episodes within 50,000 env steps, for each of seeds 1, 2, 3.
#  2. DQN on GoalNavigation2D with the fixed goal (0.3, -0.4), 10,000 env steps: the greedy policy's
#     mean return is at least 5x closer to zero than a uniformly random policy's (seeds 1, 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release --product metatrain >/dev/null
bin=.build/release/metatrain

passed=0; failed=0
check() {  # name, python condition on the JSON object d, metatrain train args...
  local name=$1 cond=$2; shift 2
  local out
  out=$("$bin" train --json "$@")
  if python3 -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if ($cond) else 1)" "$out"; then
    passed=$((passed + 1)); echo "PASS $name: $out"
  else
    failed=$((failed + 1)); echo "FAIL $name: $out"
  fi
}

for seed in 1 2 3; do
  check "cartpole seed $seed reaches 195 within 50k steps" 'd["target_reached_at_step"] is not None' \
    --env cartpole --steps 50000 --seed "$seed" --target-return 195 --eval-episodes 5
done
for seed in 1 2; do
  check "goal_navigation seed $seed beats random 5x" 'd["greedy_mean_return"] > d["random_mean_return"] / 5' \
    --env goal_navigation --goal 0.3,-0.4 --steps 10000 --seed "$seed" --target-return=-10 --eval-episodes 20
done
echo "learning-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
