"""What scipy says about BraTS segmentation metrics: the oracle for common/src/ml/metrics. Run with Debian's
python, which has numpy and scipy (apt packages python3-numpy, python3-scipy): /usr/bin/python3.

    /usr/bin/python3 test/oracles/brats_metrics_oracle.py < cases.json

stdin: a JSON list of cases {"pred": FILE, "truth": FILE, "dims": [W, H, D], "spacing": [sx, sy, sz]}, each FILE
holding W*H*D uint8 canonical labels (0 background, 1 NCR, 2 ED, 3 ET), x fastest. stdout: a JSON list, per case
{"labels": {ET, ED, NCR}, "regions": {WT, TC, ETr}}, each {"dice", "hd95", "truthVoxels", "predVoxels"}.

HD95 is medpy.metric.binary.hd95 (medpy is not packaged in Debian, so its two functions are restated here line
for line): the surface is the mask minus its binary_erosion with the 6-connected cross (outside the volume counts
as background), scipy's distance_transform_edt of the other surface's complement with the voxel spacing gives
the distances, and numpy.percentile(..., 95) of both directions concatenated is the result. Empty masks follow
the BraTS convention as nnU-Net's compute_BraTS_dice / compute_BraTS_HD95 apply it: both empty Dice 1, HD95 0;
one empty Dice 0, HD95 the 240x240x155 diagonal.
"""

import json
import math
import sys

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

BRATS_MAX_HD95 = math.sqrt(240 * 240 + 240 * 240 + 155 * 155)
STRUCTURES = {
    'labels': {'ET': [3], 'ED': [2], 'NCR': [1]},
    'regions': {'WT': [1, 2, 3], 'TC': [1, 3], 'ETr': [3]},
}


def surface_distances(result, reference, voxelspacing):
    """medpy.metric.binary.__surface_distances with connectivity 1."""
    footprint = generate_binary_structure(result.ndim, 1)
    result_border = result ^ binary_erosion(result, structure=footprint, iterations=1)
    reference_border = reference ^ binary_erosion(reference, structure=footprint, iterations=1)
    dt = distance_transform_edt(~reference_border, sampling=voxelspacing)
    return dt[result_border]


def hd95(result, reference, voxelspacing):
    """medpy.metric.binary.hd95."""
    hd1 = surface_distances(result, reference, voxelspacing)
    hd2 = surface_distances(reference, result, voxelspacing)
    return float(np.percentile(np.hstack((hd1, hd2)), 95))


def overlap(pred, truth, spacing):
    pred_voxels = int(np.count_nonzero(pred))
    truth_voxels = int(np.count_nonzero(truth))
    if pred_voxels == 0 and truth_voxels == 0:
        dice, distance = 1.0, 0.0
    elif pred_voxels == 0 or truth_voxels == 0:
        dice, distance = 0.0, BRATS_MAX_HD95
    else:
        dice = 2.0 * int(np.count_nonzero(pred & truth)) / float(pred_voxels + truth_voxels)
        distance = hd95(pred, truth, spacing)
    return {'dice': dice, 'hd95': distance, 'truthVoxels': truth_voxels, 'predVoxels': pred_voxels}


def evaluate(case):
    w, h, d = case['dims']
    # x fastest on disk, so numpy's C order is (z, y, x) and the spacing turns around with it.
    pred = np.fromfile(case['pred'], dtype=np.uint8).reshape((d, h, w))
    truth = np.fromfile(case['truth'], dtype=np.uint8).reshape((d, h, w))
    spacing = tuple(float(s) for s in reversed(case['spacing']))
    return {
        group: {
            name: overlap(np.isin(pred, codes), np.isin(truth, codes), spacing) for name, codes in members.items()
        }
        for group, members in STRUCTURES.items()
    }


if __name__ == '__main__':
    json.dump([evaluate(case) for case in json.load(sys.stdin)], sys.stdout)
