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
print(f"metatrain kernel {swift['kernel']} ({swift['kernel.arithmetic']}) on {swift['cpu']} [{swift['cpu.features']}]; "
      f"PyTorch {json.load(open(f'{out}/torch_updates.json'))['versions']['torch']}, 1 thread\n")
torch = json.load(open(f"{out}/torch_updates.json"))["results"]
train = json.load(open(f"{out}/torch_train.json"))
def t(h, b, adam="default"):
    return next(r for r in torch if r["hidden"] == h and r["batch"] == b and r["adam"] == adam)
def best(h, b):  # PyTorch's best of plain and fused Adam, as the bars are stated
    return max(t(h, b)["updates_per_sec"], t(h, b, "fused")["updates_per_sec"])
rows = [
    ("update.h64.b64 (updates/s)", swift["update.h64.b64"], best(64, 64)),
    ("update.h256.b256 (updates/s)", swift["update.h256.b256"], best(256, 256)),
    ("act.h64 (us, lower is better)", swift["act.h64"], min(t(64, 64)["us_per_greedy_action"], t(64, 64, "fused")["us_per_greedy_action"])),
    ("adapt.cartpole (env steps/s)", swift["adapt.cartpole"], train["env_steps_per_sec"]),
]
# The portable kernel (numerics: portable) and OpenBLAS (its own core-type choice) against the same peer.
for suffix, label in ((swift["kernel.portable"], "portable kernel " + swift["kernel.portable"]), ("openblas", "OpenBLAS")):
    for name in ("update.h64.b64", "update.h256.b256"):
        if f"{name}.{suffix}" in swift:
            _, h, b = name.split(".")
            rows.append((f"{name}, {label} (updates/s)", swift[f"{name}.{suffix}"], best(int(h[1:]), int(b[1:]))))
print("| measure | metatrain | PyTorch | ratio |\n|---|---|---|---|")
for name, s, p in rows:
    ratio = p / s if "lower" in name else s / p
    print(f"| {name} | {s:,.1f} | {p:,.1f} | {ratio:.2f}x |")
PY
fi
