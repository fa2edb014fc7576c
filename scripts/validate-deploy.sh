#!/usr/bin/env bash
# Validates the deployment files offline: every Kubernetes manifest under deploy/kubernetes/ against the API
# schemas with `kubernetes-validate --strict` (PyPI; no cluster needed), the cluster.yaml the ConfigMap carries
# with `metatrain config`, and every option a container command passes against that subcommand's --help; then plays
# the pods as processes (scripts/k8s-emulate.py).
#
#   scripts/validate-deploy.sh [METATRAIN_BINARY]      (default: .build/release/metatrain; test.sh passes the debug one)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/release/metatrain}
[ -x "$bin" ] || { echo "no metatrain binary at $bin: build it first" >&2; exit 2; }
venv=.build/deploy-venv
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
"$venv/bin/kubernetes-validate" --strict deploy/kubernetes/*.yaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" - "$bin" "$tmp" deploy/kubernetes/*.yaml <<'PY'
import subprocess, sys, yaml
binary, tmp, files = sys.argv[1], sys.argv[2], sys.argv[3:]
problems, checked = [], 0
for f in files:
    for doc in yaml.safe_load_all(open(f)):
        if not doc:
            continue
        if doc["kind"] == "ConfigMap" and "cluster.yaml" in doc.get("data", {}):
            path = f"{tmp}/cluster.yaml"
            open(path, "w").write(doc["data"]["cluster.yaml"])
            r = subprocess.run([binary, "config", path], capture_output=True, text=True)
            checked += 1
            if r.returncode != 0:
                problems.append(f"{f}: the ConfigMap's cluster.yaml is invalid: {r.stderr.strip() or r.stdout.strip()}")
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        for c in pod.get("containers", []):
            cmd = c.get("command", [])
            if cmd[:1] != ["metatrain"] or len(cmd) < 2:
                problems.append(f"{f}: container {c['name']} does not run metatrain: {cmd}")
                continue
            version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()[1]
            checked += 1
            if c.get("image") != f"metatrain:{version}":
                problems.append(f"{f}: container {c['name']} runs {c.get('image')}, not this release's metatrain:{version} (scripts/container.sh's tag)")
            usage = subprocess.run([binary, cmd[1], "--help"], capture_output=True, text=True).stdout
            for flag in (a for a in cmd[2:] if a.startswith("--")):
                checked += 1
                if flag + " " not in usage and flag + "\n" not in usage:
                    problems.append(f"{f}: `metatrain {cmd[1]}` has no option {flag}")
for p in problems:
    print("error:", p, file=sys.stderr)
print(f"deploy: {checked} checks of commands and configuration, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
# What can be emulated without a cluster: the pods' commands and probes as processes (eviction, OOM kill, scaling,
# the end of the run).
"$venv/bin/python" scripts/k8s-emulate.py "$bin"
