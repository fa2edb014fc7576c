#!/usr/bin/env bash
# A real single-node Slurm (slurmctld + slurmd + munge from Debian, no systemd; ../shared/reference/slurm/ has the
# recipe) runs scripts/slurm/metatrain.sbatch: the job is preempted mid-run with `scancel --signal=TERM --full`,
# requeued (`scontrol requeue`, as --requeue does on preemption), and must finish with the params_sha256 of an
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

job1=$(submit)
echo "slurm-test: job $job1 submitted; preempting it once 6 meta-iterations are applied" >&2
for _ in $(seq 1 1200); do
  [ -f "$run/metrics.jsonl" ] && [ "$(wc -l < "$run/metrics.jsonl")" -ge 6 ] && break
  finished "$job1" && break
  sleep 0.1
done
finished "$job1" && { cat "$dir/job-$job1.out" >&2; echo "slurm-test: FAIL: job $job1 ended before it could be preempted" >&2; exit 1; }
scancel --signal=TERM --full "$job1"
wait_done "$job1"
interrupted=$("$bin" checkpoint inspect "$run" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["iteration"])')
grep -q "stopped by signal" "$dir/job-$job1.out" || { cat "$dir/job-$job1.out" >&2; echo "slurm-test: FAIL: the coordinator did not stop on the signal" >&2; exit 1; }
[ "$interrupted" -lt 24 ] || { echo "slurm-test: FAIL: job $job1 was not interrupted (checkpoint at $interrupted)" >&2; exit 1; }
echo "slurm-test: job $job1 stopped with a final checkpoint at iteration $interrupted; requeueing it" >&2

# What --requeue does after a preemption: the same job, the same command, back in the queue.
# A job still completing cannot be requeued yet: try until Slurm takes it.
for _ in $(seq 1 100); do scontrol requeue "$job1" 2>/dev/null && break; sleep 0.2; done
finished "$job1" && { echo "slurm-test: FAIL: Slurm did not requeue job $job1" >&2; exit 1; }
# Slurm holds a requeued job back for 2 minutes (BeginTime), so that slurmd has forgotten the killed run (it refuses
# to launch a job id it killed moments ago): 5 seconds are enough on one node.
scontrol update JobId="$job1" StartTime=now+5
wait_done "$job1"
out="$dir/job-$job1.out"   # --open-mode=append: both runs of the job
final=$(grep -oE 'params_sha256 [0-9a-f]{64}' "$out" | tail -1 | cut -d' ' -f2)
grep -q "holds checkpoints: resuming" "$out" || { cat "$out" >&2; echo "slurm-test: FAIL: the requeued job did not resume" >&2; exit 1; }
if [ "$final" != "$reference" ]; then
  cat "$out" >&2
  echo "slurm-test: FAIL: the preempted and requeued run ended with params_sha256 ${final:-none}, the uninterrupted one with $reference" >&2
  exit 1
fi
echo "slurm-test: preempted at iteration $interrupted, requeued, resumed: same params_sha256 ${final:0:16}… as the uninterrupted run"
echo "slurm: 1 passed, 0 failed"
