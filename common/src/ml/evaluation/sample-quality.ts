// Sample quality: does a synthetic slice set look like the real one? Pure JS statistics over NHWC uint8
// slices with channels [T1, T2, FLAIR, T1ce, annotation] (the slice store layout), no tensors involved:
//   1. per image channel, 32-bin brain intensity histograms (pixels > 0), their intersection and the 1-D
//      Wasserstein distance in byte units;
//   2. per canonical label (NCR, ED, ET) and whole tumour, the per-slice area fractions: mean, share of slices
//      showing the label, and the two-sample Kolmogorov–Smirnov statistic between real and synthetic;
//   3. diversity: the mean pairwise distance between slices within each set and the ratio synthetic/real
//      (≈ 1 as diverse as the data, ≪ 1 mode collapse);
//   4. optionally (frechet-features.ts), a Fréchet distance between the sets' feature vectors from a trained
//      U-Net's encoder, attached to the report by the caller.
// `recognisablySimilar` turns a report into a pass/fail verdict with reasons.
import { decodeAnnotation } from '../../slices/presets.js';
import type { SliceStoreReader } from '../../slices/slice-store.js';
import { createRng, type SeedInput } from '../../util/rng.js';
import type { FrechetReport } from './frechet-features.js';

/** NHWC uint8 slices, channels [T1, T2, FLAIR, T1ce, annotation]. */
export interface SliceSet {
  slices: Uint8Array;
  count: number;
  size: number;
}

export const SAMPLE_QUALITY_CHANNELS = ['t1', 't2', 'flair', 't1ce'] as const;
export type SampleQualityChannel = (typeof SAMPLE_QUALITY_CHANNELS)[number];
export const SAMPLE_QUALITY_LABELS = ['NCR', 'ED', 'ET', 'WT'] as const;
export type SampleQualityLabel = (typeof SAMPLE_QUALITY_LABELS)[number];

const CHANNELS = 5;
const IMAGE_CHANNELS = 4;
const ANNOTATION_CHANNEL = 4;

export interface SampleQualityOptions {
  /** histogram bins over the byte range [0, 256); default 32 */
  bins?: number;
  /** pairs sampled per set for diversity; default 200 (all pairs are used when there are no more) */
  maxPairs?: number;
  /** seed of the pair sampling; default 0. Both sets draw from the same stream, so equal sets give equal pairs. */
  seed?: SeedInput;
}

export interface ChannelComparison {
  /** normalised histogram (sums to 1, or all 0 without brain pixels) of the pixels > 0 */
  real: number[];
  synthetic: number[];
  /** brain pixel counts behind the histograms */
  realPixels: number;
  syntheticPixels: number;
  /** Σ min(real, synthetic) over bins, in [0, 1]; 0 when either set has no brain pixels */
  intersection: number;
  /** 1-D Wasserstein (earth mover's) distance in byte units, exact on byte values; null without brain pixels */
  wasserstein: number | null;
}

export interface LabelComparison {
  /** mean per-slice area fraction */
  realMeanArea: number;
  syntheticMeanArea: number;
  /** share of slices with at least one pixel of the label */
  realPresence: number;
  syntheticPresence: number;
  /** two-sample Kolmogorov–Smirnov statistic between the per-slice area distributions; null for an empty set */
  ks: number | null;
}

export interface DiversityComparison {
  /** mean Euclidean distance between two slices' image channels scaled to [0, 1]; null with < 2 slices */
  realMeanDistance: number | null;
  syntheticMeanDistance: number | null;
  /** the same divided by √(pixels · 4): a root-mean-square difference in [0, 1], independent of slice size */
  realMeanRms: number | null;
  syntheticMeanRms: number | null;
  realPairs: number;
  syntheticPairs: number;
  /** synthetic / real mean distance; null when either is undefined or the real set has no diversity */
  ratio: number | null;
}

export interface SampleQualityReport {
  realCount: number;
  syntheticCount: number;
  size: number;
  bins: number;
  channels: Record<SampleQualityChannel, ChannelComparison>;
  labels: Record<SampleQualityLabel, LabelComparison>;
  diversity: DiversityComparison;
  /**
   * With a feature network: the Fréchet distance in the feature space of fedsynth's own U-Net encoder (not FID;
   * comparable only with the same feature network). Reported, not part of the verdict (no calibrated threshold).
   */
  frechet?: FrechetReport;
}

/** Reads a whole slice store into a SliceSet. */
export async function readSliceSet(reader: SliceStoreReader): Promise<SliceSet> {
  const count = reader.meta.count;
  return { slices: await reader.readRange(0, count), count, size: reader.meta.size };
}

function checkSet(name: string, set: SliceSet): void {
  if (!Number.isInteger(set.count) || set.count < 0 || !Number.isInteger(set.size) || set.size <= 0) {
    throw new RangeError(`${name} slice set: bad count ${set.count} or size ${set.size}`);
  }
  const expected = set.count * set.size * set.size * CHANNELS;
  if (set.slices.length !== expected) {
    throw new RangeError(
      `${name} slice set: ${set.slices.length} bytes for ${set.count} slices of ${set.size}² × ${CHANNELS}, expected ${expected}`,
    );
  }
}

/** Byte-value counts (256 entries) of one image channel over pixels > 0. */
function valueCounts(set: SliceSet, channel: number): Float64Array {
  const counts = new Float64Array(256);
  const { slices } = set;
  for (let p = channel; p < slices.length; p += CHANNELS) {
    const v = slices[p]!;
    if (v > 0) counts[v]! += 1;
  }
  return counts;
}

function sum(values: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < values.length; i++) total += values[i]!;
  return total;
}

function binned(counts: Float64Array, bins: number, total: number): number[] {
  const histogram = new Array<number>(bins).fill(0);
  if (total === 0) return histogram;
  for (let v = 0; v < 256; v++) {
    if (counts[v] === 0) continue;
    histogram[Math.min(bins - 1, Math.floor((v * bins) / 256))]! += counts[v]! / total;
  }
  return histogram;
}

/** W1 between two distributions on the byte values: Σ_v |F_real(v) − F_synthetic(v)| (unit spacing). */
function wassersteinOfCounts(a: Float64Array, aTotal: number, b: Float64Array, bTotal: number): number {
  let cdfA = 0;
  let cdfB = 0;
  let distance = 0;
  for (let v = 0; v < 255; v++) {
    cdfA += a[v]! / aTotal;
    cdfB += b[v]! / bTotal;
    distance += Math.abs(cdfA - cdfB);
  }
  return distance;
}

function compareChannel(
  real: SliceSet,
  synthetic: SliceSet,
  channel: number,
  bins: number,
): ChannelComparison {
  const realCounts = valueCounts(real, channel);
  const syntheticCounts = valueCounts(synthetic, channel);
  const realPixels = sum(realCounts);
  const syntheticPixels = sum(syntheticCounts);
  const realHistogram = binned(realCounts, bins, realPixels);
  const syntheticHistogram = binned(syntheticCounts, bins, syntheticPixels);
  let intersection = 0;
  for (let i = 0; i < bins; i++) intersection += Math.min(realHistogram[i]!, syntheticHistogram[i]!);
  const empty = realPixels === 0 || syntheticPixels === 0;
  return {
    real: realHistogram,
    synthetic: syntheticHistogram,
    realPixels,
    syntheticPixels,
    intersection: empty ? 0 : Math.min(1, intersection),
    wasserstein: empty ? null : wassersteinOfCounts(realCounts, realPixels, syntheticCounts, syntheticPixels),
  };
}

/** Per-slice area fractions of NCR, ED, ET (indices 0–2) and WT (index 3). */
function labelAreas(set: SliceSet): Float64Array[] {
  const pixels = set.size * set.size;
  const areas = SAMPLE_QUALITY_LABELS.map(() => new Float64Array(set.count));
  const decoded = new Uint8Array(256);
  for (let v = 0; v < 256; v++) decoded[v] = decodeAnnotation(v);
  for (let s = 0; s < set.count; s++) {
    const counts = [0, 0, 0, 0];
    const base = s * pixels * CHANNELS + ANNOTATION_CHANNEL;
    for (let i = 0; i < pixels; i++) counts[decoded[set.slices[base + i * CHANNELS]!]!]! += 1;
    areas[0]![s] = counts[1]! / pixels;
    areas[1]![s] = counts[2]! / pixels;
    areas[2]![s] = counts[3]! / pixels;
    areas[3]![s] = (counts[1]! + counts[2]! + counts[3]!) / pixels;
  }
  return areas;
}

/**
 * Two-sample Kolmogorov–Smirnov statistic sup_x |F_a(x) − F_b(x)| of the empirical distribution functions;
 * ties are handled by stepping past every copy of a value in both samples before comparing. null if either
 * sample is empty.
 */
export function ksStatistic(a: ArrayLike<number>, b: ArrayLike<number>): number | null {
  if (a.length === 0 || b.length === 0) return null;
  const x = Float64Array.from(a).sort();
  const y = Float64Array.from(b).sort();
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < x.length && j < y.length) {
    const value = Math.min(x[i]!, y[j]!);
    while (i < x.length && x[i] === value) i++;
    while (j < y.length && y[j] === value) j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  return d;
}

function mean(values: Float64Array): number {
  return values.length === 0 ? 0 : sum(values) / values.length;
}

function presence(values: Float64Array): number {
  if (values.length === 0) return 0;
  let shown = 0;
  for (const v of values) if (v > 0) shown++;
  return shown / values.length;
}

/** Pairs (i < j): all of them when there are at most maxPairs, else maxPairs drawn uniformly with replacement. */
function choosePairs(count: number, maxPairs: number, seed: SeedInput): Array<[number, number]> {
  const pairs: Array<[number, number]> = [];
  if (count < 2 || maxPairs <= 0) return pairs;
  if ((count * (count - 1)) / 2 <= maxPairs) {
    for (let i = 0; i < count; i++) for (let j = i + 1; j < count; j++) pairs.push([i, j]);
    return pairs;
  }
  const rng = createRng(seed).fork('sample-quality/diversity');
  while (pairs.length < maxPairs) {
    const i = rng.int(count);
    const j = rng.int(count - 1);
    pairs.push([i, j >= i ? j + 1 : j]);
  }
  return pairs;
}

function meanPairwiseDistance(
  set: SliceSet,
  maxPairs: number,
  seed: SeedInput,
): { mean: number | null; pairs: number } {
  const pairs = choosePairs(set.count, maxPairs, seed);
  if (pairs.length === 0) return { mean: null, pairs: 0 };
  const pixels = set.size * set.size;
  const sliceBytes = pixels * CHANNELS;
  let total = 0;
  for (const [i, j] of pairs) {
    const a = i * sliceBytes;
    const b = j * sliceBytes;
    let squared = 0;
    for (let p = 0; p < sliceBytes; p += CHANNELS) {
      for (let c = 0; c < IMAGE_CHANNELS; c++) {
        const diff = set.slices[a + p + c]! - set.slices[b + p + c]!;
        squared += diff * diff;
      }
    }
    total += Math.sqrt(squared) / 255;
  }
  return { mean: total / pairs.length, pairs: pairs.length };
}

/** Compares a synthetic slice set with a real one; both must have the same slice size. */
export function compareSampleSets(
  real: SliceSet,
  synthetic: SliceSet,
  options: SampleQualityOptions = {},
): SampleQualityReport {
  checkSet('real', real);
  checkSet('synthetic', synthetic);
  if (real.size !== synthetic.size) {
    throw new RangeError(`slice sizes differ: real ${real.size}, synthetic ${synthetic.size}`);
  }
  const bins = options.bins ?? 32;
  if (!Number.isInteger(bins) || bins < 1 || bins > 256)
    throw new RangeError(`bins must be 1..256, got ${bins}`);
  const maxPairs = options.maxPairs ?? 200;
  const seed = options.seed ?? 0;

  const channels = {} as Record<SampleQualityChannel, ChannelComparison>;
  SAMPLE_QUALITY_CHANNELS.forEach((name, c) => (channels[name] = compareChannel(real, synthetic, c, bins)));

  const realAreas = labelAreas(real);
  const syntheticAreas = labelAreas(synthetic);
  const labels = {} as Record<SampleQualityLabel, LabelComparison>;
  SAMPLE_QUALITY_LABELS.forEach((name, k) => {
    labels[name] = {
      realMeanArea: mean(realAreas[k]!),
      syntheticMeanArea: mean(syntheticAreas[k]!),
      realPresence: presence(realAreas[k]!),
      syntheticPresence: presence(syntheticAreas[k]!),
      ks: ksStatistic(realAreas[k]!, syntheticAreas[k]!),
    };
  });

  const realDiversity = meanPairwiseDistance(real, maxPairs, seed);
  const syntheticDiversity = meanPairwiseDistance(synthetic, maxPairs, seed);
  const rmsScale = Math.sqrt(real.size * real.size * IMAGE_CHANNELS);
  const ratio =
    realDiversity.mean !== null && syntheticDiversity.mean !== null && realDiversity.mean > 0
      ? syntheticDiversity.mean / realDiversity.mean
      : null;

  return {
    realCount: real.count,
    syntheticCount: synthetic.count,
    size: real.size,
    bins,
    channels,
    labels,
    diversity: {
      realMeanDistance: realDiversity.mean,
      syntheticMeanDistance: syntheticDiversity.mean,
      realMeanRms: realDiversity.mean === null ? null : realDiversity.mean / rmsScale,
      syntheticMeanRms: syntheticDiversity.mean === null ? null : syntheticDiversity.mean / rmsScale,
      realPairs: realDiversity.pairs,
      syntheticPairs: syntheticDiversity.pairs,
      ratio,
    },
  };
}

export interface SimilarityThresholds {
  /** every image channel's histogram intersection must reach this */
  minHistogramIntersection: number;
  /** synthetic / real whole-tumour mean area must lie within [min, max] */
  wtAreaRatio: readonly [number, number];
  /** synthetic / real diversity must reach this */
  minDiversityRatio: number;
}

/**
 * Defaults: histogram intersection ≥ 0.7 on every channel (≈ 70 % of the brain intensity mass overlaps);
 * WT mean area within a factor of 2 of the real one; diversity ratio ≥ 0.5 (half the real spread or more —
 * below that the generator is collapsing onto a few modes).
 */
export const DEFAULT_SIMILARITY_THRESHOLDS: SimilarityThresholds = {
  minHistogramIntersection: 0.7,
  wtAreaRatio: [0.5, 2],
  minDiversityRatio: 0.5,
};

export interface SimilarityVerdict {
  ok: boolean;
  /** one line per failed criterion, starting with the channel name, 'WT' or 'diversity' */
  reasons: string[];
}

const fmt = (value: number): string => value.toFixed(3);

/**
 * Whether the synthetic set is recognisably similar to the real one. Unassessable criteria fail: no brain
 * pixels in a channel, a real set without diversity or with < 2 slices. A real set without tumour passes the
 * WT criterion only if the synthetic set has none either.
 */
export function recognisablySimilar(
  report: SampleQualityReport,
  thresholds: Partial<SimilarityThresholds> = {},
): SimilarityVerdict {
  const t = { ...DEFAULT_SIMILARITY_THRESHOLDS, ...thresholds };
  const reasons: string[] = [];

  for (const name of SAMPLE_QUALITY_CHANNELS) {
    const { intersection } = report.channels[name];
    if (intersection < t.minHistogramIntersection) {
      reasons.push(
        `${name}: histogram intersection ${fmt(intersection)} < ${fmt(t.minHistogramIntersection)}`,
      );
    }
  }

  const wt = report.labels.WT;
  const [low, high] = t.wtAreaRatio;
  if (wt.realMeanArea === 0) {
    if (wt.syntheticMeanArea > 0) {
      reasons.push(`WT: real set has no tumour but synthetic mean area is ${fmt(wt.syntheticMeanArea)}`);
    }
  } else {
    const areaRatio = wt.syntheticMeanArea / wt.realMeanArea;
    if (!(areaRatio >= low && areaRatio <= high)) {
      reasons.push(
        `WT: mean area ratio ${fmt(areaRatio)} (synthetic ${fmt(wt.syntheticMeanArea)} / real ${fmt(wt.realMeanArea)}) outside [${low}, ${high}]`,
      );
    }
  }

  const { ratio } = report.diversity;
  if (ratio === null) {
    reasons.push('diversity: cannot be assessed (fewer than 2 slices, or the real slices are all identical)');
  } else if (ratio < t.minDiversityRatio) {
    reasons.push(`diversity: ratio ${fmt(ratio)} < ${fmt(t.minDiversityRatio)} (mode collapse?)`);
  }

  return { ok: reasons.length === 0, reasons };
}
