#!/usr/bin/env bash
# Meta-loop throughput: `metatrain local` on benchmarks/reptile-reference.yaml with 1 and 2 workers, from
# each run's metrics.jsonl (meta-iterations/s, coordinator busy time per iteration, bytes on the wire);
# with REFERENCE_PYTHON (torch + ray installed) also ../shared/reference/reptile_ray.py on the same work.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release --product metatrain >/dev/null
out=${BENCH_OUT:-/tmp/metatrain-bench-cluster}
rm -rf "$out"; mkdir -p "$out"
for w in 1 2; do
  .build/release/metatrain local --config benchmarks/reptile-reference.yaml --workers "$w" --run-dir "$out/w$w" \
    --no-eval --log-level warning > "$out/w$w.txt"
done
ref=../shared/reference
if [ -n "${REFERENCE_PYTHON:-}" ] && [ -f "$ref/reptile_ray.py" ]; then
  for w in 1 2; do
    "$REFERENCE_PYTHON" "$ref/reptile_ray.py" --workers "$w" --meta-iters 10 --meta-batch 4 --inner-steps 2000 --brief \
      > "$out/ray_w$w.json" 2>"$out/ray_w$w.err" || true
  done
fi
python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
print("| run | meta-iterations | meta-loop s | meta-iters/s | coordinator busy ms/iter | bytes sent/iter | θ bytes x workers | params_sha256 |")
print("|---|---|---|---|---|---|---|---|")
rows = {}
for w in (1, 2):
    lines = [json.loads(l) for l in open(f"{out}/w{w}/metrics.jsonl")]
    total = sum(l["seconds"] for l in lines)
    busy = sum(l["coordinator_busy_seconds"] for l in lines) / len(lines) * 1000
    sent = sum(l["bytes_sent"] for l in lines) / len(lines)
    theta = lines[-1]["parameters"] * 4 * w
    rows[w] = len(lines) / total
    print(f"| metatrain, {w} worker(s) | {len(lines)} | {total:.2f} | {len(lines)/total:.3f} | {busy:.2f} | {sent:,.0f} | {theta:,} | {lines[-1]['params_sha256'][:16]}… |")
for w in (1, 2):
    path = f"{out}/ray_w{w}.json"
    if os.path.exists(path) and os.path.getsize(path) > 0:
        try:
            d = json.load(open(path))
        except Exception as e:
            print(f"| Ray, {w} worker(s) | failed: {e} |"); continue
        wall = d.get("wall_s")
        ips = d.get("meta_iters_per_sec")
        print(f"| reptile_ray.py, {w} worker(s) | 10 | {wall:.2f} | {ips:.3f} | | | | {str(d.get('theta_sha256',''))[:16]}… |")
        if ips: print(f"\nratio metatrain / Ray at {w} worker(s): {rows[w] / ips:.1f}x")
PY
