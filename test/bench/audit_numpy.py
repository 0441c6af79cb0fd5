#!/usr/bin/env python3
"""Brute-force masked Pearson of every candidate against every private slice (and mirror) at full resolution, as
numpy matrix products on the data fedsynth prepared (audit.bench.ts writes it): the baseline for audit throughput.
Usage: audit_numpy.py DIR  (DIR/meta.json, queries.f32, masks.f32, counts.f64, values.f32, sums.f32, squares.f32)"""
import json
import sys
import time

import numpy as np

d = sys.argv[1]
meta = json.load(open(f"{d}/meta.json"))
q, m, px = meta["queries"], meta["privates"], meta["pixels"]
qc = np.fromfile(f"{d}/queries.f32", dtype=np.float32).reshape(q, px * 4)
qm = np.fromfile(f"{d}/masks.f32", dtype=np.float32).reshape(q, px)
n = np.fromfile(f"{d}/counts.f64", dtype=np.float64).reshape(q, 1)
pv = np.fromfile(f"{d}/values.f32", dtype=np.float32).reshape(m, px * 4)
ps = np.fromfile(f"{d}/sums.f32", dtype=np.float32).reshape(m, px)
pq = np.fromfile(f"{d}/squares.f32", dtype=np.float32).reshape(m, px)

times = []
cpu = []
for _ in range(int(meta.get("repeats", 3))):
    t = time.perf_counter()
    c = time.process_time()
    num = qc @ pv.T
    s1 = qm @ ps.T
    s2 = qm @ pq.T
    var = s2 - s1 * s1 / n
    r = np.where(var > 1e-9, num / np.sqrt(np.maximum(var, 1e-9)), 0.0)
    best = r.max(axis=1)
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
sec = sorted(times)[len(times) // 2]
cpu_sec = sorted(cpu)[len(cpu) // 2]
print(json.dumps({"seconds": sec, "cpuSeconds": cpu_sec, "pairsPerSecond": q * m / sec, "maxScores": best.astype(float).tolist(),
                  "numpy": np.__version__}))
