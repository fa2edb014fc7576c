#!/usr/bin/env bash
# Starts a metatrain run on the machines cluster.yaml lists, adds workers to it, or stops it.
#
#   scripts/launch.sh [cluster.yaml]                      coordinator here + every host's workers
#   scripts/launch.sh --add HOST COUNT [--threads K] [cluster.yaml]   more workers for the live run
#   scripts/launch.sh stop                                 SIGTERM the coordinator (final checkpoint,
#                                                          workers told to stop), then the workers
#
# Hosts named localhost run without ssh. Other hosts are reached with `ssh HOST` (keys set up
# beforehand) and must have metatrain built at the same path as here (or set METATRAIN_REMOTE_BIN).
# Workers connect to coordinator.advertise; bind the coordinator to an address they can reach.
# State (pids, logs) lives in runs/.launch/.
set -euo pipefail
cd "$(dirname "$0")/.."
state=runs/.launch
bin=${METATRAIN_BIN:-$PWD/.build/release/metatrain}
remote_bin=${METATRAIN_REMOTE_BIN:-$bin}
mkdir -p "$state"

build() {
  scripts/bootstrap.sh
  swift build -c release --product metatrain >/dev/null
}

# start_workers HOST COUNT THREADS ENDPOINT
start_workers() {
  local host=$1 count=$2 threads=$3 endpoint=$4 i
  for ((i = 0; i < count; i++)); do
    if [ "$host" = localhost ] || [ "$host" = 127.0.0.1 ]; then
      nohup "$bin" worker --connect "$endpoint" --threads "$threads" >>"$state/worker-local.log" 2>&1 &
      echo "localhost $!" >>"$state/workers"
    else
      pid=$(ssh -o BatchMode=yes "$host" \
        "nohup '$remote_bin' worker --connect '$endpoint' --threads $threads >>/tmp/metatrain-worker.log 2>&1 </dev/null & echo \$!")
      echo "$host $pid" >>"$state/workers"
    fi
  done
  echo "launch: $count worker(s) on $host -> $endpoint"
}

case "${1:-}" in
  stop)
    if [ -f "$state/coordinator.pid" ] && kill -0 "$(cat "$state/coordinator.pid")" 2>/dev/null; then
      kill -TERM "$(cat "$state/coordinator.pid")"
      for _ in $(seq 100); do kill -0 "$(cat "$state/coordinator.pid")" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -f "$state/workers" ]; then
      while read -r host pid; do
        if [ "$host" = localhost ]; then kill -TERM "$pid" 2>/dev/null || true
        else ssh -o BatchMode=yes "$host" "kill -TERM $pid 2>/dev/null || true" || true; fi
      done <"$state/workers"
    fi
    rm -f "$state/coordinator.pid" "$state/workers"
    echo "launch: stopped"
    ;;
  --add)
    host=${2:?--add HOST COUNT}; count=${3:?--add HOST COUNT}; shift 3
    threads=1; config=cluster.yaml
    while [ $# -gt 0 ]; do
      case $1 in --threads) threads=$2; shift 2 ;; *) config=$1; shift ;; esac
    done
    build
    start_workers "$host" "$count" "$threads" "$("$bin" config "$config" --advertise)"
    ;;
  *)
    config=${1:-cluster.yaml}
    build
    "$bin" config "$config" >/dev/null   # validate before starting anything
    if [ -f "$state/coordinator.pid" ] && kill -0 "$(cat "$state/coordinator.pid")" 2>/dev/null; then
      echo "launch: a coordinator is already running (pid $(cat "$state/coordinator.pid")); scripts/launch.sh stop first" >&2
      exit 1
    fi
    rm -f "$state/workers"
    nohup "$bin" coordinator --config "$config" >"$state/coordinator.log" 2>&1 &
    echo $! >"$state/coordinator.pid"
    endpoint=$("$bin" config "$config" --advertise)
    while read -r host count threads; do
      [ "$count" -gt 0 ] && start_workers "$host" "$count" "$threads" "$endpoint"
    done < <("$bin" config "$config" --workers)
    echo "launch: coordinator pid $(cat "$state/coordinator.pid"), log $state/coordinator.log"
    ;;
esac
