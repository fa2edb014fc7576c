#!/usr/bin/env bash
# Multi-host tests on one machine: the coordinator and each worker in its own network namespace, on its
# own address (10.77.0.0/24 on a bridge inside a "switch" namespace), with faults injected on the links.
#
#   scripts/netns-cluster.sh [partition|lossy|sbatch|all] [--long]    (default: all)
#   The lossy scenario runs 20 s (CI), or the full minute with --long (or LOSSY_SECONDS=N).
#
#   partition  cut one worker's link for 10 s mid-run: it is declared dead within
#              heartbeat x liveness + 1 s, its slot is requeued, it reconnects when the link returns, and
#              the final params_sha256 equals the undisturbed run's.
#   lossy      5% packet loss both ways on one worker (nftables) for the whole run, plus a 2 s one-way
#              partition (coordinator -> worker dropped) on another: no worker is declared dead (liveness 5),
#              the run completes, same params_sha256.
#   sbatch     scripts/slurm/metatrain.sbatch itself, on a "node" of its own (namespace, host name, hosts file), its
#              `srun` worker step on three other nodes, with the default cluster.yaml's coordinator section
#              (loopback advertise) under the script's wildcard bind: the endpoint file names the coordinator's node,
#              not loopback, every worker joins from its node, and the run ends with the local run's params_sha256.
#
# Touches only what it creates (namespaces named mt<pid>-*, their veths and nft tables inside them) and
# removes all of it on exit, even after a failure. Needs root and `ip netns`; prints SKIP and exits 0
# where namespaces cannot be made. Prints "netns-cluster: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=all
for arg in "$@"; do
  case $arg in --long) LOSSY_SECONDS=${LOSSY_SECONDS:-62} ;; *) scenario=$arg ;; esac
done
bin=$PWD/.build/release/metatrain
p=mt$$
sw=$p-sw
net=10.77.0
work=$(mktemp -d /tmp/metatrain-netns.XXXXXX)
namespaces=()
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; done
  if [ "${KEEP_NETNS_LOGS:-}" = 1 ]; then echo "netns-cluster: logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

if [ "$(id -u)" -ne 0 ] || ! ip netns add "$p-probe" 2>/dev/null; then
  # CI runs as root, where namespaces must work: a skip there would hide that nothing was tested.
  if [ "${CI:-}" = true ] && [ "$(id -u)" -eq 0 ]; then
    echo "netns-cluster: FAIL: running as root under CI=true, yet network namespaces cannot be created" >&2
    exit 1
  fi
  echo "netns-cluster: SKIP: network namespaces cannot be created here (needs root and ip netns)"
  exit 0
fi
ip netns del "$p-probe"
scripts/bootstrap.sh
swift build -c release --product metatrain >/dev/null

ip netns add "$sw"; namespaces+=("$sw")
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up

# host NAME OCTET: a namespace with eth0 = $net.OCTET, cabled to the bridge through veth v-NAME.
host() {
  local ns=$p-$1
  ip netns add "$ns"; namespaces+=("$ns")
  ip -n "$ns" link add eth0 type veth peer name "v-$1" netns "$sw"
  ip -n "$sw" link set "v-$1" master br0 up
  ip -n "$ns" addr add "$net.$2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}
host co 1
for i in 1 2 3; do host "w$i" $((10 + i)); done

# config NAME ITERATIONS HEARTBEAT_MS LIVENESS BIND
config() {
  cat >"$work/$1.yaml" <<YAML
run: {name: $1, seed: 5, checkpoint_interval: 10}
coordinator: {bind: "$5", heartbeat_interval_ms: $3, liveness: $4}
meta: {algorithm: reptile, iterations: $2, meta_batch: 6, schedule: constant, outer_step: 0.5}
task_family: {env: cartpole}
inner_loop: {budget: 1500, hidden_layers: [32, 32]}
evaluation: {tasks: 0}
YAML
}

sha() { "$bin" checkpoint inspect "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["params_sha256"])'; }
metric() { tail -1 "$1/metrics.jsonl" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2', ''))"; }
lines() { [ -f "$1/metrics.jsonl" ] && wc -l <"$1/metrics.jsonl" || echo 0; }
wait_until() { local t=$1; shift; for _ in $(seq $((t * 10))); do eval "$@" && return 0; sleep 0.1; done; return 1; }

# start NAME ITERATIONS HEARTBEAT LIVENESS: coordinator in co, 3 workers in w1..w3.
start() {
  config "$1" "$2" "$3" "$4" "tcp://$net.1:5555"
  ip netns exec "$p-co" "$bin" coordinator --config "$work/$1.yaml" --run-dir "$work/$1" >"$work/$1-coordinator.log" 2>&1 &
  coordinator=$!; pids+=("$coordinator")
  wait_until 20 "[ -f $work/$1/coordinator.endpoint ]"
  for i in 1 2 3; do
    ip netns exec "$p-w$i" "$bin" worker --connect "tcp://$net.1:5555" --heartbeat-interval-ms "$3" >"$work/$1-w$i.log" 2>&1 &
    pids+=("$!")
  done
}

# reference NAME ITERATIONS: the same run undisturbed for ITERATIONS meta-iterations, on loopback here.
# (The outer step is constant, so a run stopped after k iterations is comparable with a k-iteration run.)
reference() {
  config "$1-ref" "$2" 500 5 "tcp://127.0.0.1:*"
  "$bin" local --config "$work/$1-ref.yaml" --workers 2 --run-dir "$work/$1-ref" --no-eval --log-level warning >/dev/null
  sha "$work/$1-ref"
}

# stop_run NAME: SIGTERM the coordinator (final checkpoint), wait for it, set done_iterations.
# (Not in a $(...) subshell: `wait` there cannot wait for this shell's child, and the count would race
# the coordinator's last iteration.)
stop_run() {
  kill -TERM "$coordinator" 2>/dev/null || true
  wait "$coordinator" || true
  done_iterations=$(lines "$work/$1")
}

# first_difference RUN REF: the first meta-iteration whose params_sha256 differs (diagnostics on failure).
first_difference() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
a = [json.loads(l)["params_sha256"] for l in open(sys.argv[1])]
b = [json.loads(l)["params_sha256"] for l in open(sys.argv[2])]
diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
print("first differing iteration:", diff, "of", len(a), "/", len(b))
PY
}

passed=0; failed=0
check() {
  if eval "$2"; then passed=$((passed + 1)); last=pass; echo "PASS $1"
  else failed=$((failed + 1)); last=fail; echo "FAIL $1"; fi
}

if [ "$scenario" = partition ] || [ "$scenario" = all ]; then
  start partition 100000 300 3
  wait_until 60 "[ \$(lines $work/partition) -ge 3 ]"
  ip -n "$sw" link set v-w1 down
  cut=$(date +%s.%N)
  wait_until 10 "grep -q 'declared dead' $work/partition-coordinator.log" || true
  detected=$(python3 -c "print(round($(date +%s.%N) - $cut, 2))")
  sleep "$(python3 -c "print(max(0, 10 - $detected))")"
  ip -n "$sw" link set v-w1 up
  up=$(date +%s.%N)
  echo "partition: link of w1 down 10 s; declared dead after ${detected} s (bound 0.3 x 3 + 1 = 1.9 s)"
  # The worker retries with backoff 1, 2, 4, 8, 16 s: it is back within about 30 s of the cut.
  rejoined=no
  wait_until 40 "[ \$(grep -c 'joined from' $work/partition-coordinator.log) -ge 4 ]" && rejoined=yes
  echo "partition: w1 registered again: $rejoined, $(python3 -c "print(round($(date +%s.%N) - $up, 1))") s after the link returned"
  sleep 1
  stop_run partition
  check "partition: death detected within 1.9 s" "python3 -c 'import sys; sys.exit(0 if $detected <= 1.9 else 1)'"
  check "partition: w1 re-registered after the link returned" "[ $rejoined = yes ]"
  check "partition: the dead worker's slot was taken over (requeued or backed up)" "[ \$(( \$(metric $work/partition requeued) + \$(metric $work/partition backups_sent) )) -ge 1 ]"
  ref=$(reference partition "$done_iterations")
  check "partition: params_sha256 after $done_iterations iterations equals the undisturbed run's" "[ \"\$(sha $work/partition)\" = $ref ]"
  [ "$last" = pass ] || first_difference "$work/partition" "$work/partition-ref"
fi

if [ "$scenario" = lossy ] || [ "$scenario" = all ]; then
  start lossy 100000 1000 5
  ip netns exec "$p-w1" nft -f - <<NFT
table inet metatrain_loss {
  chain in { type filter hook input priority 0; policy accept; numgen random mod 100 < 5 drop; }
  chain out { type filter hook output priority 0; policy accept; numgen random mod 100 < 5 drop; }
}
NFT
  began=$(date +%s)
  wait_until 60 "[ \$(lines $work/lossy) -ge 5 ]"
  ip netns exec "$p-w2" nft add table inet metatrain_oneway
  ip netns exec "$p-w2" nft add chain inet metatrain_oneway in "{ type filter hook input priority 0; policy drop; }"
  sleep 2
  ip netns exec "$p-w2" nft delete table inet metatrain_oneway
  left=$((began + ${LOSSY_SECONDS:-20} - $(date +%s)))
  [ "$left" -gt 0 ] && sleep "$left"   # set-up may have taken longer than the lossy period
  stop_run lossy
  echo "lossy: 5% loss both ways on w1 for $(( $(date +%s) - began )) s, a 2 s one-way partition on w2; $done_iterations iterations"
  check "lossy: no false death (liveness 5)" "[ \"\$(metric $work/lossy workers_declared_dead)\" = 0 ]"
  check "lossy: the run kept going" "[ $done_iterations -ge 20 ]"
  ref=$(reference lossy "$done_iterations")
  check "lossy: params_sha256 after $done_iterations iterations equals the undisturbed run's" "[ \"\$(sha $work/lossy)\" = $ref ]"
  [ "$last" = pass ] || first_difference "$work/lossy" "$work/lossy-ref"
fi

if [ "$scenario" = sbatch ] || [ "$scenario" = all ]; then
  # Each namespace is a node: its own host name (a UTS namespace) and a hosts file that names the coordinator's
  # node (`ip netns exec` mounts /etc/netns/NAME/hosts over /etc/hosts), as a cluster's DNS would.
  node=$p-conode
  for ns in co w1 w2 w3; do
    mkdir -p "/etc/netns/$p-$ns"
    printf '127.0.0.1 localhost\n%s.1 %s\n' "$net" "$node" >"/etc/netns/$p-$ns/hosts"
  done
  # srun as Slurm runs the worker step: the command once per node (here w1..w3), each under its own host name;
  # TERM (the batch script ending the step) is passed on to every task.
  mkdir -p "$work/bin"
  cat >"$work/bin/srun" <<SRUN
#!/usr/bin/env bash
while [ "\${1#--}" != "\$1" ]; do shift; done
tasks=()
for i in 1 2 3; do
  ip netns exec $p-w\$i unshare --uts bash -c 'hostname "\$0"; exec "\$@"' $p-w\$i-node "\$@" >"$work/sbatch-w\$i.log" 2>&1 &
  tasks+=(\$!)
done
trap 'kill -TERM "\${tasks[@]}" 2>/dev/null' TERM INT
for t in "\${tasks[@]}"; do while kill -0 "\$t" 2>/dev/null; do wait "\$t"; done; done
SRUN
  chmod +x "$work/bin/srun"
  # The default cluster.yaml's coordinator section (bind and advertise on loopback), a short run.
  { sed -n '/^coordinator:/,/^[a-z_]*:/p' cluster.yaml | sed '$d'
    cat <<YAML
run: {name: sbatch, seed: 5, checkpoint_interval: 4}
meta: {algorithm: reptile, iterations: 12, meta_batch: 6, schedule: constant, outer_step: 0.5}
task_family: {env: cartpole}
inner_loop: {budget: 1500, hidden_layers: [32, 32]}
evaluation: {tasks: 0}
YAML
  } >"$work/sbatch.yaml"
  grep -q "advertise: tcp://127.0.0.1" "$work/sbatch.yaml" || { echo "netns-cluster: cluster.yaml's coordinator section has no loopback advertise any more: update the sbatch scenario" >&2; exit 1; }
  ip netns exec "$p-co" unshare --uts bash -c 'hostname "$0"; exec "$@"' "$node" \
    env PATH="$work/bin:$PATH" METATRAIN_BIN="$bin" bash scripts/slurm/metatrain.sbatch "$work/sbatch.yaml" "$work/sbatch" \
    >"$work/sbatch-job.log" 2>&1 &
  job=$!; pids+=("$job")
  wait_until 60 "[ -s $work/sbatch/coordinator.endpoint ]" || true
  advertised=$(cat "$work/sbatch/coordinator.endpoint" 2>/dev/null || true)
  status=0; wait "$job" || status=$?
  echo "sbatch: the job's coordinator wrote '$advertised'; the job exited $status"
  check "sbatch: the endpoint file names the coordinator's node, not loopback" "[[ '$advertised' == tcp://$node:* ]]"
  check "sbatch: the job ends 0 with every iteration applied" "[ $status = 0 ] && [ \$(lines $work/sbatch) = 12 ]"
  joined=$(cat "$work"/sbatch-w?.log | grep -c "registered as" || true)
  check "sbatch: a worker on each of the 3 other nodes joined ($joined registrations)" "[ $joined -ge 3 ] && grep -q 'registered as' $work/sbatch-w1.log && grep -q 'registered as' $work/sbatch-w2.log && grep -q 'registered as' $work/sbatch-w3.log"
  ref=$(reference sbatch 12)
  check "sbatch: params_sha256 equals the local run's" "[ \"\$(sha $work/sbatch)\" = $ref ]"
  [ "$last" = pass ] || { tail -20 "$work/sbatch-job.log"; tail -5 "$work"/sbatch-w1.log; }
fi

echo "netns-cluster: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
