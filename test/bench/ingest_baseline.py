#!/usr/bin/python3
"""Baseline for `npm run bench:ingest`: the same read + check + paper-preset slicing, with nibabel + numpy.

Usage: /usr/bin/python3 test/bench/ingest_baseline.py CASE_DIR [CASE_DIR ...]
Prints JSON {cases, slices, seconds}. Timing starts after the imports, as the Node side's does.
"""
import glob
import json
import os
import sys
import time

import nibabel as nib
import numpy as np

SUFFIXES = {
    "t1": ["-t1n", "_t1"],
    "t1ce": ["-t1c", "_t1ce"],
    "t2": ["-t2w", "_t2"],
    "flair": ["-t2f", "_flair"],
    "seg": ["-seg", "_seg"],
}


def find(case_dir, suffixes):
    for s in suffixes:
        hits = glob.glob(os.path.join(case_dir, f"*{s}.nii*"))
        if hits:
            return hits[0]
    raise SystemExit(f"missing {suffixes} in {case_dir}")


def slice_case(case_dir):
    imgs = {m: nib.load(find(case_dir, s)) for m, s in SUFFIXES.items()}
    shape = imgs["t1"].shape
    for m, img in imgs.items():  # same checks as ours: grid, affine, finite, known labels
        if img.shape != shape or not np.allclose(img.affine, imgs["t1"].affine, atol=1e-2):
            raise SystemExit(f"{case_dir}: {m} grid differs")
    vols = {m: np.asarray(imgs[m].get_fdata(dtype=np.float64)) for m in ["t1", "t2", "flair", "t1ce"]}
    for m, v in vols.items():
        if not np.isfinite(v).all():
            raise SystemExit(f"{case_dir}: {m} not finite")
    seg = np.asarray(imgs["seg"].dataobj)
    values = set(np.unique(seg).tolist())
    if not values <= {0, 1, 2, 3, 4}:
        raise SystemExit(f"{case_dir}: unknown labels {values}")
    et = 3 if 3 in values and 4 not in values else 4
    annotation = np.zeros(seg.shape, dtype=np.uint8)
    annotation[seg == 1] = 51
    annotation[seg == 2] = 102
    annotation[seg == et] = 204
    scaled = {m: (v / v.max()) * 255.0 for m, v in vols.items()}
    W, H, D = shape
    px, py = (256 - W) // 2, (256 - H) // 2
    bright = np.count_nonzero(scaled["t1"] > 50, axis=(0, 1))
    kept = np.nonzero(bright / (256 * 256) > 0.15)[0]
    out = np.zeros((len(kept), 256, 256, 5), dtype=np.uint8)
    for i, m in enumerate(["t1", "t2", "flair", "t1ce"]):
        block = np.clip(np.floor(scaled[m][:, :, kept] + 0.5), 0, 255).astype(np.uint8)
        out[:, py : py + H, px : px + W, i] = block.transpose(2, 1, 0)
    out[:, py : py + H, px : px + W, 4] = annotation[:, :, kept].transpose(2, 1, 0)
    return len(kept)


start = time.perf_counter()
slices = sum(slice_case(d) for d in sys.argv[1:])
print(json.dumps({"cases": len(sys.argv) - 1, "slices": int(slices), "seconds": time.perf_counter() - start}))
