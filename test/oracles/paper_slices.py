#!/usr/bin/python3
"""Independent implementation of the paper's slice preprocessing (DESIGN.md step 2), with nibabel + numpy.

Usage: /usr/bin/python3 test/oracles/paper_slices.py <case-dir>
Prints JSON: the kept axial indices and the sha256 of the slices as NHWC uint8 bytes (rows y, columns x,
channels T1, T2, FLAIR, T1ce, annotation), which common/src/slices/slicer.spec.ts compares with ours.
Written from the paper's description and the authors' MATLAB (volume / max * 255, uint8() rounding half away
from zero, zero-padding 8 px, keep when > 15 % of 256x256 T1 pixels exceed 50, annotation = label * 255/5).
"""
import glob
import hashlib
import json
import os
import sys

import nibabel as nib
import numpy as np

case_dir = sys.argv[1]


def find(suffixes):
    for s in suffixes:
        hits = glob.glob(os.path.join(case_dir, f"*{s}.nii*"))
        if hits:
            return hits[0]
    raise SystemExit(f"no {suffixes} file in {case_dir}")


files = {
    "t1": find(["-t1n", "_t1"]),
    "t1ce": find(["-t1c", "_t1ce"]),
    "t2": find(["-t2w", "_t2"]),
    "flair": find(["-t2f", "_flair"]),
}
seg_file = find(["-seg", "_seg"])
is2023 = os.path.basename(seg_file).endswith(("-seg.nii.gz", "-seg.nii"))

scaled = {}
for name, f in files.items():
    v = np.asarray(nib.load(f).get_fdata(dtype=np.float64))
    scaled[name] = (v / v.max()) * 255.0
seg = np.rint(np.asarray(nib.load(seg_file).get_fdata())).astype(np.int64)
canonical_et = 3 if is2023 else 4
annotation = np.zeros(seg.shape, dtype=np.float64)
annotation[seg == 1] = 51
annotation[seg == 2] = 102
annotation[seg == canonical_et] = 204

W, H, D = seg.shape
pad_x, pad_y = (256 - W) // 2, (256 - H) // 2


def to_uint8(a):
    # MATLAB uint8(): round half away from zero, saturate
    return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)


kept = []
digest = hashlib.sha256()
for z in range(D):
    canvas = {}
    for name in ["t1", "t2", "flair", "t1ce"]:
        c = np.zeros((256, 256))
        c[pad_y : pad_y + H, pad_x : pad_x + W] = scaled[name][:, :, z].T  # rows y, columns x
        canvas[name] = c
    if np.count_nonzero(canvas["t1"] > 50) / (256 * 256) <= 0.15:
        continue
    kept.append(z)
    a = np.zeros((256, 256))
    a[pad_y : pad_y + H, pad_x : pad_x + W] = annotation[:, :, z].T
    stack = np.stack([to_uint8(canvas[n]) for n in ["t1", "t2", "flair", "t1ce"]] + [a.astype(np.uint8)], axis=-1)
    digest.update(np.ascontiguousarray(stack).tobytes())

print(json.dumps({"kept": kept, "sha256": digest.hexdigest()}))
