#!/usr/bin/env bash
# Runs `metatrain bench --json` (release build) and, when a Python with torch and gymnasium is given in
# REFERENCE_PYTHON, the PyTorch peer's update microbenchmark in the same sitting, then prints the ratios.
#   REFERENCE_PYTHON=/path/to/venv/bin/python scripts/bench.sh
# (pip install -r ../shared/reference/requirements.txt into that venv once; never in CI: torch is ~4 GB.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release --product metatrain >/dev/null
out=${BENCH_OUT:-/tmp/metatrain-bench}
mkdir -p "$out"
.build/release/metatrain bench --json | tee "$out/swift.jsonl"

ref=../shared/reference
if [ -n "${REFERENCE_PYTHON:-}" ] && [ -f "$ref/dqn_torch.py" ]; then
  "$REFERENCE_PYTHON" "$ref/dqn_torch.py" --bench-updates 2000 > "$out/torch_updates.json"
  "$REFERENCE_PYTHON" "$ref/dqn_torch.py" --steps 20000 --seed 1 > "$out/torch_train.json"
  python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
swift = {d["name"]: d["value"] for d in map(json.loads, open(f"{out}/swift.jsonl"))}
torch = json.load(open(f"{out}/torch_updates.json"))["results"]
train = json.load(open(f"{out}/torch_train.json"))
def t(h, b, adam="default"):
    return next(r for r in torch if r["hidden"] == h and r["batch"] == b and r["adam"] == adam)
rows = [
    ("update.h64.b64 (updates/s)", swift["update.h64.b64"], t(64, 64)["updates_per_sec"]),
    ("update.h256.b256 (updates/s)", swift["update.h256.b256"], t(256, 256)["updates_per_sec"]),
    ("update.h256.b256 vs fused Adam", swift["update.h256.b256"], t(256, 256, "fused")["updates_per_sec"]),
    ("act.h64 (us, lower is better)", swift["act.h64"], t(64, 64)["us_per_greedy_action"]),
    ("adapt.cartpole (env steps/s)", swift["adapt.cartpole"], train["env_steps_per_sec"]),
]
print("| measure | metatrain | PyTorch | ratio |\n|---|---|---|---|")
for name, s, p in rows:
    ratio = p / s if "lower" in name else s / p
    print(f"| {name} | {s:,.1f} | {p:,.1f} | {ratio:.2f}x |")
PY
fi
