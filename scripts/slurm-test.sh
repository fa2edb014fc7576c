#!/usr/bin/env bash
# A real single-node Slurm (slurmctld + slurmd + munge from Debian, no systemd; ../shared/reference/slurm/ has the
# recipe) runs scripts/slurm/metatrain.sbatch: the job is preempted mid-run with `scancel --signal=TERM --full` and
# must requeue itself; a second job's coordinator is SIGKILLed and the job must end its worker step and requeue
# itself; both must finish with the params_sha256 of an
# uninterrupted run of the same configuration.
# Every daemon is stopped by its PID on exit, whatever happened.
#
#   scripts/slurm-test.sh            (root, or sudo, to install the packages; skips with a message otherwise,
#                                     except under CI=true, where a skip would hide that nothing was tested)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(pwd)/.build/release/metatrain
[ -x "$bin" ] || { echo "slurm-test: build the release binary first (swift build -c release)" >&2; exit 2; }

skip() {
  if [ "${CI:-}" = true ]; then echo "slurm-test: FAIL: $1" >&2; exit 1; fi
  echo "slurm-test: SKIP: $1"; echo "slurm: 0 passed, 0 failed (skipped)"; exit 0
}
[ "$(id -u)" -eq 0 ] || skip "needs root to run slurmd and munged"
packages=(slurm-wlm slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "slurm-test: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1 \
    || skip "could not install ${missing[*]}"
fi

dir=$(mktemp -d /tmp/metatrain-slurm.XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
  # Jobs first, while the daemons can still stop them; then anything left that runs from this test's folder.
  scancel --full --signal=KILL --user=root >/dev/null 2>&1 || true
  sleep 0.5
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -f "$dir/munge/munged.pid" ] && kill -TERM "$(cat "$dir/munge/munged.pid")" 2>/dev/null || true
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  pkill -KILL -f "$dir" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/runs"
chown munge: "$dir/munge"; chmod 755 "$dir/munge"
runuser -u munge -- munged --socket="$dir/munge/munge.socket.2" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
host=$(hostname)
sed -e "s|@DIR@|$dir|g" -e "s|@HOST@|$host|g" <<'CONF' > "$dir/slurm.conf"
ClusterName=metatrain-test
SlurmctldHost=@HOST@(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=@DIR@/munge/munge.socket.2
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=@DIR@/state
SlurmdSpoolDir=@DIR@/spool
SlurmctldPidFile=@DIR@/slurmctld.pid
SlurmdPidFile=@DIR@/slurmd.pid
SlurmctldLogFile=@DIR@/log/slurmctld.log
SlurmdLogFile=@DIR@/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
NodeName=@HOST@ NodeAddr=127.0.0.1 CPUs=2 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
setsid slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 & pids+=($!); disown
setsid slurmd -D -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 & pids+=($!); disown
for _ in $(seq 1 100); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
[ "${state:-}" = idle ] || { tail -20 "$dir/log/"*.log >&2; echo "slurm-test: FAIL: the node never became idle (${state:-no answer})" >&2; exit 1; }

# The run: CartPole Reptile, long enough (a few seconds per iteration group) to be preempted in the middle.
config="$dir/cluster.yaml"
sed -e 's/^  iterations: .*/  iterations: 24/' -e 's/^  checkpoint_interval: .*/  checkpoint_interval: 4/' cluster.yaml > "$config"
"$bin" config "$config" >/dev/null

echo "slurm-test: uninterrupted reference run" >&2
"$bin" local --config "$config" --run-dir "$dir/reference" --workers 2 --no-eval >"$dir/reference.log" 2>&1
reference=$(grep -oE 'params_sha256 [0-9a-f]{64}' "$dir/reference.log" | tail -1 | cut -d' ' -f2)
[ -n "$reference" ] || { tail -5 "$dir/reference.log" >&2; echo "slurm-test: FAIL: no reference params_sha256" >&2; exit 1; }

run="$dir/runs/job"
submit() {
  METATRAIN_BIN="$bin" METATRAIN_BIND='tcp://127.0.0.1:*' sbatch --parsable --ntasks=2 --cpus-per-task=1 \
    --output="$dir/job-%j.out" scripts/slurm/metatrain.sbatch "$config" "$run"
}
finished() { [ -z "$(squeue -h -j "$1" 2>/dev/null)" ]; }
wait_done() {
  for _ in $(seq 1 1200); do finished "$1" && return 0; sleep 0.1; done
  echo "slurm-test: FAIL: job $1 did not end" >&2; cat "$dir"/job-*.out >&2; exit 1
}

# Waits until job $1 has applied 6 meta-iterations of the run in $run (or ended).
six_applied() {
  for _ in $(seq 1 1200); do
    [ -f "$run/metrics.jsonl" ] && [ "$(wc -l < "$run/metrics.jsonl")" -ge 6 ] && return 0
    finished "$1" && return 0
    sleep 0.1
  done
}

job1=$(submit)
echo "slurm-test: job $job1 submitted; preempting it once 6 meta-iterations are applied" >&2
six_applied "$job1"
finished "$job1" && { cat "$dir/job-$job1.out" >&2; echo "slurm-test: FAIL: job $job1 ended before it could be preempted" >&2; exit 1; }
pending() { [ "$(squeue -h -j "$1" -o %T 2>/dev/null)" = PENDING ]; }
# The job requeues itself (the script calls `scontrol requeue`): wait for it to be back in the queue.
wait_requeued() {
  for _ in $(seq 1 1200); do pending "$1" && return 0; finished "$1" && break; sleep 0.1; done
  cat "$dir/job-$1.out" >&2; echo "slurm-test: FAIL: job $1 did not requeue itself ($2)" >&2; exit 1
}
# Slurm holds a requeued job back (BeginTime, about 2 minutes: slurmd must forget the killed run before it launches the
# job id again); say how long, then let it start in 5 s, which is enough on one node.
release() {
  local begin; begin=$(scontrol show job "$1" | grep -oE 'StartTime=[^ ]+' | head -1 | cut -d= -f2)
  echo "slurm-test: job $1 requeued itself ($2); Slurm would start it at $begin, $(( $(date -d "$begin" +%s) - $(date +%s) )) s from now" >&2
  scontrol update JobId="$1" StartTime=now+5
}
check_final() {
  local out="$dir/job-$1.out" final   # --open-mode=append: every run of the job
  final=$(grep -oE 'params_sha256 [0-9a-f]{64}' "$out" | tail -1 | cut -d' ' -f2)
  grep -q "holds checkpoints: resuming" "$out" || { cat "$out" >&2; echo "slurm-test: FAIL: the requeued job $1 did not resume" >&2; exit 1; }
  if [ "$final" != "$reference" ]; then
    cat "$out" >&2
    echo "slurm-test: FAIL: the $2 and requeued run ended with params_sha256 ${final:-none}, the uninterrupted one with $reference" >&2
    exit 1
  fi
  echo "slurm-test: $2 at iteration $3, requeued itself, resumed: same params_sha256 ${final:0:16}… as the uninterrupted run"
}

scancel --signal=TERM --full "$job1"
wait_requeued "$job1" "preempted"
interrupted=$("$bin" checkpoint inspect "$run" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["iteration"])')
grep -q "stopped by signal" "$dir/job-$job1.out" || { cat "$dir/job-$job1.out" >&2; echo "slurm-test: FAIL: the coordinator did not stop on the signal" >&2; exit 1; }
grep -q "requeueing job $job1" "$dir/job-$job1.out" || { cat "$dir/job-$job1.out" >&2; echo "slurm-test: FAIL: job $job1 did not say it requeued itself" >&2; exit 1; }
[ "$interrupted" -lt 24 ] || { echo "slurm-test: FAIL: job $job1 was not interrupted (checkpoint at $interrupted)" >&2; exit 1; }
release "$job1" "preempted at iteration $interrupted"
wait_done "$job1"
check_final "$job1" "preempted" "$interrupted"

# The coordinator alone dies hard (SIGKILL: an OOM kill, a segfault): the job must end its worker step, not wait on
# it until the time limit, and requeue itself.
run="$dir/runs/crash"
job2=$(submit)
echo "slurm-test: job $job2 submitted; SIGKILLing its coordinator once 6 meta-iterations are applied" >&2
six_applied "$job2"
coordinator=$(pgrep -f "coordinator --config $config --resume-or-start $run" | head -1)
[ -n "$coordinator" ] || { cat "$dir/job-$job2.out" >&2; echo "slurm-test: FAIL: no coordinator process of job $job2" >&2; exit 1; }
kill -KILL "$coordinator"
wait_requeued "$job2" "coordinator killed"
grep -q "ending the worker step" "$dir/job-$job2.out" || { cat "$dir/job-$job2.out" >&2; echo "slurm-test: FAIL: job $job2 did not end its worker step" >&2; exit 1; }
crashed=$("$bin" checkpoint inspect "$run" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["iteration"])')
release "$job2" "coordinator killed after iteration $crashed"
wait_done "$job2"
check_final "$job2" "coordinator SIGKILLed" "$crashed"
echo "slurm: 2 passed, 0 failed"
