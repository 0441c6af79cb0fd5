// Per-subject segmentation metrics as the BraTS community reports them: Dice and HD95 per label (ET, ED, NCR, as
// the Akbar et al. 2024 paper's tables) and per BraTS region (WT, TC, ET), over a subject's 3-D volume.
//
// Conventions, from the BraTS 2020/2021 evaluation (CBICA portal) as nnU-Net reimplements it
// (MIC-DKFZ/nnUNet v1, nnunet/dataset_conversion/Task082_BraTS_2020.py: compute_BraTS_dice, compute_BraTS_HD95
// on medpy.metric.binary.dc / hd95):
//   - both masks empty:       Dice 1, HD95 0 (nothing to find and nothing found is a perfect answer);
//   - exactly one mask empty: Dice 0, HD95 = BRATS_MAX_HD95, the diagonal of the 240×240×155 1 mm BraTS volume;
//   - otherwise Dice = 2|A∩B| / (|A| + |B|) and HD95 = medpy's hd95 with the voxel spacing (surface-distance.ts).
// The BraTS 2023+ organisers' tool (rachitsaluja/BraTS-2023-Metrics, "Legacy" full-volume scores) agrees on the
// empty cases but penalises with 374 and takes HD95 from DeepMind's surface-distance package (the larger of the
// two directed, surface-area-weighted 95th percentiles), so its HD95 differs slightly from medpy's.
import { checkGrid, type VolumeDims, type VoxelSpacing } from './distance-transform.js';
import { collectSurfaces, hd95FromSurfaces } from './surface-distance.js';

/** The canonical labels, reported separately as in the paper: ET enhancing tumour, ED oedema, NCR necrotic core. */
export type LabelKey = 'ET' | 'ED' | 'NCR';
/**
 * The BraTS regions: WT whole tumour (NCR ∪ ED ∪ ET), TC tumour core (NCR ∪ ET), and ETr, the region BraTS calls
 * "ET" (enhancing tumour, label 3 alone). ETr is the same mask as the ET label, so its metrics are the label's,
 * computed once; the key differs only so that tables can hold labels and regions side by side.
 */
export type RegionKey = 'WT' | 'TC' | 'ETr';

export const LABEL_KEYS: readonly LabelKey[] = ['ET', 'ED', 'NCR'];
export const REGION_KEYS: readonly RegionKey[] = ['WT', 'TC', 'ETr'];

/** Canonical label codes: 0 background, 1 NCR, 2 ED, 3 ET. */
export const LABEL_CODES: Readonly<Record<LabelKey, number>> = { NCR: 1, ED: 2, ET: 3 };
/** The canonical codes each region unites. */
export const REGION_CODES: Readonly<Record<RegionKey, readonly number[]>> = {
  WT: [1, 2, 3],
  TC: [1, 3],
  ETr: [3],
};
/** How BraTS papers and leaderboards name the regions. */
export const REGION_DISPLAY_NAMES: Readonly<Record<RegionKey, string>> = { WT: 'WT', TC: 'TC', ETr: 'ET' };

/** HD95 penalty (mm) when exactly one mask is empty: √(240² + 240² + 155²) = 373.12866… (nnU-Net: 373.12866). */
export const BRATS_MAX_HD95 = Math.sqrt(240 * 240 + 240 * 240 + 155 * 155);

export interface OverlapMetrics {
  dice: number;
  /** mm */
  hd95: number;
  truthVoxels: number;
  predVoxels: number;
}

export interface SubjectMetrics {
  subject: string;
  labels: Record<LabelKey, OverlapMetrics>;
  regions: Record<RegionKey, OverlapMetrics>;
}

export interface DiceHd95 {
  dice: number;
  hd95: number;
}

export interface MetricTable {
  labels: Record<LabelKey, DiceHd95>;
  regions: Record<RegionKey, DiceHd95>;
}

export interface MetricsSummary {
  subjects: number;
  mean: MetricTable;
  median: MetricTable;
}

/** Dice of two binary masks (non-zero = inside); 1 when both are empty (BraTS convention). */
export function dice(a: Uint8Array, b: Uint8Array): number {
  checkSameLength(a, b);
  let sizeA = 0;
  let sizeB = 0;
  let both = 0;
  for (let i = 0; i < a.length; i++) {
    const inA = a[i] !== 0 ? 1 : 0;
    const inB = b[i] !== 0 ? 1 : 0;
    sizeA += inA;
    sizeB += inB;
    both += inA & inB;
  }
  return overlapDice(both, sizeA, sizeB);
}

/**
 * HD95 in mm of two binary masks (non-zero = inside) on a [W, H, D] grid with spacing [sx, sy, sz]: 0 when both
 * are empty, BRATS_MAX_HD95 when exactly one is.
 */
export function hd95(a: Uint8Array, b: Uint8Array, dims: VolumeDims, spacing: VoxelSpacing): number {
  checkVolumes(a, b, dims, spacing);
  const emptyA = !a.some((v) => v !== 0);
  const emptyB = !b.some((v) => v !== 0);
  if (emptyA || emptyB) return emptyA && emptyB ? 0 : BRATS_MAX_HD95;
  const [surfaceA] = collectSurfaces(a, dims, NON_ZERO, 1);
  const [surfaceB] = collectSurfaces(b, dims, NON_ZERO, 1);
  return hd95FromSurfaces(surfaceA, surfaceB, dims, spacing);
}

/**
 * Dice and HD95 of a subject's predicted labels against the truth, per label and per region. Both volumes hold
 * canonical codes 0..3 on a [W, H, D] grid (x fastest; z = the subject's kept axial slices, stacked) with voxel
 * spacing [sx, sy, sz] in mm.
 */
export function computeSubjectMetrics(
  subject: string,
  pred: Uint8Array,
  truth: Uint8Array,
  dims: [number, number, number],
  spacing: [number, number, number],
): SubjectMetrics {
  checkVolumes(pred, truth, dims, spacing);
  // One pass for every voxel count: joint[p·4 + t] = voxels predicted p whose truth is t.
  const joint = new Float64Array(16);
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i];
    const t = truth[i];
    if ((p | t) > 3) {
      throw new RangeError(
        `voxel ${i}: labels must be canonical codes 0..3, got prediction ${p}, truth ${t}`,
      );
    }
    joint[p * 4 + t]++;
  }
  const predSurfaces = collectSurfaces(pred, dims, STRUCTURES_OF_CODE, STRUCTURES.length);
  const truthSurfaces = collectSurfaces(truth, dims, STRUCTURES_OF_CODE, STRUCTURES.length);
  const results = STRUCTURES.map((codes, k) => {
    let predVoxels = 0;
    let truthVoxels = 0;
    let both = 0;
    for (let p = 0; p < 4; p++) {
      for (let t = 0; t < 4; t++) {
        const count = joint[p * 4 + t];
        const inPred = codes.includes(p);
        const inTruth = codes.includes(t);
        if (inPred) predVoxels += count;
        if (inTruth) truthVoxels += count;
        if (inPred && inTruth) both += count;
      }
    }
    const distance =
      predVoxels === 0 || truthVoxels === 0
        ? emptyHd95(predVoxels, truthVoxels)
        : hd95FromSurfaces(predSurfaces[k], truthSurfaces[k], dims, spacing);
    return { dice: overlapDice(both, predVoxels, truthVoxels), hd95: distance, truthVoxels, predVoxels };
  });
  const [et, ed, ncr, wt, tc] = results;
  return {
    subject,
    labels: { ET: et, ED: ed, NCR: ncr },
    regions: { WT: wt, TC: tc, ETr: { ...et } },
  };
}

/**
 * Mean and median (numpy's: the average of the two middle values for an even count) of Dice and HD95 over
 * subjects, per label and region. Penalised HD95 values (empty masks) count like any other, as BraTS ranks them.
 */
export function summarizeMetrics(perSubject: readonly SubjectMetrics[]): MetricsSummary {
  if (perSubject.length === 0) throw new RangeError('summarizeMetrics needs at least one subject');
  const table = (reduce: (values: number[]) => number): MetricTable => {
    const summarize = (pick: (s: SubjectMetrics) => OverlapMetrics): DiceHd95 => ({
      dice: reduce(perSubject.map((s) => pick(s).dice)),
      hd95: reduce(perSubject.map((s) => pick(s).hd95)),
    });
    return {
      labels: {
        ET: summarize((s) => s.labels.ET),
        ED: summarize((s) => s.labels.ED),
        NCR: summarize((s) => s.labels.NCR),
      },
      regions: {
        WT: summarize((s) => s.regions.WT),
        TC: summarize((s) => s.regions.TC),
        ETr: summarize((s) => s.regions.ETr),
      },
    };
  };
  return { subjects: perSubject.length, mean: table(mean), median: table(median) };
}

/** Masks scored per subject, in bit order: the three labels, then the WT and TC regions (ETr = the ET label). */
const STRUCTURES: readonly (readonly number[])[] = [
  [LABEL_CODES.ET],
  [LABEL_CODES.ED],
  [LABEL_CODES.NCR],
  REGION_CODES.WT,
  REGION_CODES.TC,
];

/** code -> bit set of the STRUCTURES containing it (a 256-entry table for collectSurfaces). */
const STRUCTURES_OF_CODE = (() => {
  const table = new Uint8Array(256);
  STRUCTURES.forEach((codes, bit) => codes.forEach((code) => (table[code] |= 1 << bit)));
  return table;
})();

/** Binary masks: any non-zero value is inside. */
const NON_ZERO = new Uint8Array(256).fill(1, 1);

function overlapDice(both: number, sizeA: number, sizeB: number): number {
  return sizeA + sizeB === 0 ? 1 : (2 * both) / (sizeA + sizeB);
}

function emptyHd95(sizeA: number, sizeB: number): number {
  return sizeA === 0 && sizeB === 0 ? 0 : BRATS_MAX_HD95;
}

function mean(values: number[]): number {
  return values.reduce((sum, v) => sum + v, 0) / values.length;
}

function median(values: number[]): number {
  const sorted = Float64Array.from(values).sort();
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function checkSameLength(a: Uint8Array, b: Uint8Array): void {
  if (a.length !== b.length) throw new RangeError(`masks differ in size: ${a.length} vs ${b.length} voxels`);
}

function checkVolumes(a: Uint8Array, b: Uint8Array, dims: VolumeDims, spacing: VoxelSpacing): void {
  checkSameLength(a, b);
  const voxels = checkGrid(dims, spacing);
  if (a.length !== voxels) {
    throw new RangeError(`volumes hold ${a.length} voxels, dims [${dims.join(', ')}] need ${voxels}`);
  }
}
