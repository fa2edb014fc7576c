#!/usr/bin/env python3
"""Pipelined vs synchronous Reptile on the same seeds and test tasks (docs/prereg/pipeline.md, part 2).

usage: compare.py DIR [DIR ...]  (each DIR holds sync-seedS.json and pipelined-seedS.json, `metatrain eval --json`
outputs; several DIRs are pooled, their seeds distinct)
Prints, at each scored step, the pooled mean greedy return of each mode and the paired difference pipelined − sync
with a two-level percentile bootstrap 95% CI (seeds, then each seed's tasks; 10,000 resamples, seed 0), per seed too,
and the verdict of the pre-registration at 2,000 steps.
"""
import glob, json, os, random, sys

runs, seeds = {}, []
for d in sys.argv[1:]:
    for s in sorted(int(os.path.basename(p)[len("sync-seed"):-5]) for p in glob.glob(os.path.join(d, "sync-seed*.json"))):
        assert s not in seeds, f"seed {s} twice"
        seeds.append(s)
        for mode in ("sync", "pipelined"):
            runs[mode, s] = json.load(open(os.path.join(d, f"{mode}-seed{s}.json")))
seeds.sort()
every, budget = runs["sync", seeds[0]]["every"], runs["sync", seeds[0]]["budget"]
points = list(range(0, budget + 1, every))
rng = random.Random(0)

def diffs(point):
    i = point // every
    return {s: [p[i] - q[i] for p, q in zip(runs["pipelined", s]["curves_per_task"]["meta"], runs["sync", s]["curves_per_task"]["meta"])]
            for s in seeds}

def mean(xs): return sum(xs) / len(xs)

def bootstrap(by_seed, n=10_000):
    out = []
    for _ in range(n):
        pooled = []
        for s in (rng.choice(seeds) for _ in seeds):
            tasks = by_seed[s]
            pooled += [rng.choice(tasks) for _ in tasks]
        out.append(mean(pooled))
    out.sort()
    return out[int(0.025 * n)], out[int(0.975 * n) - 1]

print(f"seeds {seeds}; {len(runs['sync', seeds[0]]['curves_per_task']['meta'])} tasks each; kernel {runs['sync', seeds[0]]['kernel']}, CPU {runs['sync', seeds[0]]['cpu']}")
print("| step | sync mean return | pipelined mean return | pipelined − sync [95% CI] | per seed (pipelined − sync) |")
print("|---:|---:|---:|---|---|")
verdict = None
for point in points:
    i = point // every
    sync = mean([v[i] for s in seeds for v in runs["sync", s]["curves_per_task"]["meta"]])
    pipe = mean([v[i] for s in seeds for v in runs["pipelined", s]["curves_per_task"]["meta"]])
    by_seed = diffs(point)
    low, high = bootstrap(by_seed)
    per_seed = ", ".join(f"{s}: {mean(by_seed[s]):+.1f}" for s in seeds)
    print(f"| {point:,} | {sync:.1f} | {pipe:.1f} | {pipe - sync:+.1f} [{low:+.1f}, {high:+.1f}] | {per_seed} |")
    if point == 2000:
        verdict = "does not hurt" if low > -50 else "hurts" if high < 0 else "not decided"
print(f"verdict at 2,000 steps (pre-registered): {verdict}")
