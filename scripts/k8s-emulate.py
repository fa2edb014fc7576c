"""Emulates the Kubernetes deployment's pods as processes: the commands and probes come from deploy/kubernetes/.

No cluster runs here, so what Kubernetes would do is played by this script, with the manifests' own commands:
the coordinator Job's pod is evicted (SIGTERM: it must exit with a code the Job's podFailurePolicy ignores, and its
workers must wait) and started again (it must resume); it is OOM-killed (SIGKILL: the readiness probe must fail on
the status.json it left) and started again; the worker Deployment is scaled up and down while the run goes on;
at the end the Job completes (exit 0) and the workers stay up, waiting for the next run, instead of exiting (a
Deployment restarts a worker that exits: a crash loop). The run's params_sha256 must equal `metatrain local`'s.

Mapped for one machine: /etc/metatrain/cluster.yaml -> the ConfigMap's cluster.yaml (meta.iterations 12 and
checkpoint_interval 2, so it runs in seconds), /runs -> a temporary folder, the Service name and the bind address
-> 127.0.0.1 and port 5555 -> a free port.

    python3 scripts/k8s-emulate.py METATRAIN_BINARY
Prints "k8s-emulate: N passed, M failed"; exits non-zero on any failure.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulation:
    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.config_path = folder / "cluster.yaml"
        self.passed = 0
        self.failed = 0
        docs = [d for f in sorted(DEPLOY.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
        self.docs = docs
        self.job = self.find("Job", "metatrain-coordinator")
        self.deployment = self.find("Deployment", "metatrain-worker")
        config = yaml.safe_load(self.find("ConfigMap", "metatrain-config")["data"]["cluster.yaml"])
        config["meta"]["iterations"] = 12
        config["run"]["checkpoint_interval"] = 2
        config["run"]["run_dir"] = str(folder / "runs")
        config["coordinator"]["bind"] = self.mapped([config["coordinator"]["bind"]])[0]
        config["coordinator"]["advertise"] = self.mapped([config["coordinator"]["advertise"]])[0]
        self.config_path.write_text(yaml.safe_dump(config))
        self.config = config
        self.run_dir = folder / "runs" / str(config["run"]["name"])
        self.logs: list[Path] = []

    def find(self, kind: str, name: str) -> dict[str, Any]:
        for d in self.docs:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                return d
        raise SystemExit(f"k8s-emulate: no {kind} {name} in {DEPLOY}")

    def container(self, workload: dict[str, Any]) -> dict[str, Any]:
        containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
        return containers[0]

    def mapped(self, argv: list[str]) -> list[str]:
        """A pod's command as this machine runs it."""
        out = []
        for a in argv:
            a = a.replace("/etc/metatrain/cluster.yaml", str(self.config_path))
            a = a.replace("/runs/", str(self.folder / "runs") + "/")
            a = a.replace("metatrain-coordinator:5555", f"127.0.0.1:{self.port}")
            a = a.replace("0.0.0.0:5555", f"127.0.0.1:{self.port}")
            out.append(self.binary if a == "metatrain" else a)
        return out

    def start(self, workload: dict[str, Any], name: str) -> subprocess.Popen[bytes]:
        log = self.folder / f"{name}.log"
        self.logs.append(log)
        command = self.mapped(self.container(workload)["command"])
        return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def probe(self, kind: str) -> int:
        argv = self.mapped(self.container(self.job)[kind]["exec"]["command"])
        return subprocess.run(argv, capture_output=True).returncode

    def metrics(self) -> int:
        path = self.run_dir / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.passed += 1
            print(f"PASS {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail[-1500:]}" if detail else ""))


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def exit_code(p: subprocess.Popen[bytes], seconds: float) -> int | None:
    try:
        return p.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def params_sha256(binary: str, run: Path) -> str:
    out = subprocess.run([binary, "checkpoint", "inspect", str(run), "--json"], capture_output=True, text=True, check=True).stdout
    return str(json.loads(out)["params_sha256"])


def main() -> int:
    binary = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="metatrain-k8s-") as tmp:
        e = Emulation(binary, Path(tmp))
        pods: list[subprocess.Popen[bytes]] = []
        try:
            return scenario(e, pods)
        finally:
            for p in pods:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def scenario(e: Emulation, pods: list[subprocess.Popen[bytes]]) -> int:
    ignored = [r for r in e.job["spec"]["podFailurePolicy"]["rules"] if r["action"] == "Ignore" and "onExitCodes" in r]
    stopped_code = int(e.mapped(e.container(e.job)["command"])[e.container(e.job)["command"].index("--stopped-exit-code") + 1])
    e.check("the Job ignores the exit code of a coordinator stopped by a signal",
            any(stopped_code in r["onExitCodes"]["values"] for r in ignored), f"{stopped_code} not in {ignored}")

    coordinator = e.start(e.job, "coordinator-1"); pods.append(coordinator)
    e.check("the coordinator pod becomes ready (readiness probe)", wait_for(lambda: e.probe("readinessProbe") == 0, 60), e.log("coordinator-1"))
    workers = [e.start(e.deployment, f"worker-{i}") for i in range(2)]; pods += workers
    wait_for(lambda: e.metrics() >= 2, 120)
    # kubectl scale --replicas=3
    workers.append(e.start(e.deployment, "worker-2")); pods.append(workers[-1])
    e.check("a worker added while the run goes on joins", wait_for(lambda: "registered as" in e.log("worker-2"), 60), e.log("worker-2"))

    # Eviction: SIGTERM, within terminationGracePeriodSeconds.
    grace = int(e.job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    coordinator.send_signal(signal.SIGTERM)
    code = exit_code(coordinator, grace)
    e.check(f"an evicted coordinator checkpoints and exits {stopped_code} within the {grace} s grace period", code == stopped_code,
            f"exit {code}: {e.log('coordinator-1')}")
    e.check("the probes fail while no coordinator runs", e.probe("readinessProbe") != 0 and e.probe("livenessProbe") != 0)
    e.check("the workers wait for the restarted coordinator",
            wait_for(lambda: all("the run resumes from its checkpoint; reconnecting" in e.log(f"worker-{i}") for i in range(3)), 30)
            and all(w.poll() is None for w in workers), "\n".join(e.log(f"worker-{i}")[-400:] for i in range(3)))

    # The Job's next pod: the same command resumes.
    coordinator = e.start(e.job, "coordinator-2"); pods.append(coordinator)
    e.check("the next coordinator pod resumes and becomes ready",
            wait_for(lambda: e.probe("readinessProbe") == 0, 60) and "resuming" in e.log("coordinator-2"), e.log("coordinator-2"))
    before = e.metrics()
    wait_for(lambda: e.metrics() >= before + 2, 120)
    # OOM kill: SIGKILL leaves a status.json that says "running"; the probes must not believe it.
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    e.check("after an OOM kill the probes fail on the status.json left behind",
            e.probe("readinessProbe") != 0 and e.probe("livenessProbe") != 0)
    coordinator = e.start(e.job, "coordinator-3"); pods.append(coordinator)
    # kubectl scale --replicas=2: the removed pod gets SIGTERM and leaves within the grace period.
    removed = workers.pop()
    removed.send_signal(signal.SIGTERM)
    worker_grace = int(e.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    e.check("a worker scaled away exits 0 within its grace period", exit_code(removed, worker_grace) == 0, e.log("worker-2"))

    code = exit_code(coordinator, 300)
    e.check("the Job completes: the coordinator exits 0 after the last iteration", code == 0 and e.metrics() == 12,
            f"exit {code}, {e.metrics()} iterations: {e.log('coordinator-3')}")
    e.check("after the run the workers stay up, waiting for the next run (no crash loop)",
            wait_for(lambda: all("waiting for the next run's coordinator" in e.log(f"worker-{i}") for i in range(2)), 30)
            and all(w.poll() is None for w in workers), "\n".join(e.log(f"worker-{i}")[-400:] for i in range(2)))
    # kubectl scale --replicas=0
    for w in workers:
        w.send_signal(signal.SIGTERM)
    e.check("scaled to 0, the waiting workers exit 0", all(exit_code(w, worker_grace) == 0 for w in workers))

    reference = e.folder / "reference"
    subprocess.run([e.binary, "local", "--config", str(e.config_path), "--run-dir", str(reference), "--workers", "2",
                    "--no-eval", "--log-level", "warning"], check=True, capture_output=True)
    e.check("params_sha256 equals the uninterrupted local run's", params_sha256(e.binary, e.run_dir) == params_sha256(e.binary, reference))
    print(f"k8s-emulate: {e.passed} passed, {e.failed} failed")
    return 1 if e.failed else 0


if __name__ == "__main__":
    sys.exit(main())
