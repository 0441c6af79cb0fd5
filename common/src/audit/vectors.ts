// Slices -> what the memorization audit correlates. The four image channels of a slice (the annotation is left
// out: mostly zero, it would make every tumour-free pair look alike), over the QUERY's foreground only: pixels
// whose mean image intensity exceeds MASK_LEVEL. Measured on phantom slices, the unmasked correlation of any two
// brain slices is ~0.97 (the shared black background and head outline dominate), which buries a noisy copy
// (0.967) among unseen subjects (up to 0.984); over the foreground, unseen subjects reach 0.93 and noisy copies
// stay above 0.98 (README, "Memorization audit").
//
// The masked Pearson correlation of a query q (mask m, n = 4·|m| values) with a private slice p is
//   r = Σ q̃·p / sqrt(Σ_m p² − (Σ_m p)² / n),   q̃ = m ⊙ (q − mean_m q) / ‖m ⊙ (q − mean_m q)‖
// (Σ q̃ = 0, so p needs no centring): three dot products — q̃ with p's values, m with p's per-pixel sums and
// per-pixel sums of squares — hence still matrix products over all pairs, with each side prepared once.

/** Image channels per slice that enter the correlation: t1, t2, flair, t1ce (the first four of SLICE_CHANNELS). */
export const AUDIT_CHANNELS = 4;
/** Foreground: mean of the four image channels above this (grey levels of 255; background is exactly 0 in BraTS). */
export const MASK_LEVEL = 8;
/** A query with less foreground than this share of its pixels is correlated over the whole slice. */
export const MIN_MASK_SHARE = 0.01;

export interface SliceGeometry {
  /** width = height */
  size: number;
  /** channels per slice in the data (≥ AUDIT_CHANNELS; the first four are the images) */
  channels: number;
}

export interface ImageOptions {
  mirror?: boolean;
  /** shift in pixels of the output grid (zero fill) */
  dx?: number;
  dy?: number;
  /** area-average by this factor (size must be a multiple) */
  factor?: number;
}

/**
 * The four image channels of slice `index` of NHWC uint8 `data` as floats in [0, 1], pixel-major (side² × 4),
 * mirrored left-right, then shifted, then downsampled as asked.
 */
export function imageOf(
  data: Uint8Array,
  index: number,
  geometry: SliceGeometry,
  options: ImageOptions = {},
  out?: Float32Array,
): Float32Array {
  const { size, channels } = geometry;
  const f = options.factor ?? 1;
  if (size % f !== 0) throw new Error(`slice size ${size} is not a multiple of the coarse factor ${f}`);
  const side = size / f;
  const img = out ?? new Float32Array(side * side * AUDIT_CHANNELS);
  img.fill(0);
  const base = index * size * size * channels;
  const dx = options.dx ?? 0;
  const dy = options.dy ?? 0;
  const mirror = options.mirror ?? false;
  const w = 1 / (255 * f * f);
  // Output columns x whose source column x − dx is inside the slice; the source steps by ±1 along them.
  const xa = Math.max(0, dx);
  const xb = Math.min(size, size + dx);
  const step = mirror ? -channels : channels;
  for (let y = 0; y < size; y++) {
    const sy = y - dy;
    if (sy < 0 || sy >= size) continue;
    const row = Math.floor(y / f) * side;
    let s = base + (sy * size + (mirror ? size - 1 - (xa - dx) : xa - dx)) * channels;
    if (f === 1) {
      for (let x = xa, o = (row + xa) * AUDIT_CHANNELS; x < xb; x++, o += AUDIT_CHANNELS, s += step) {
        img[o] = data[s]! * w;
        img[o + 1] = data[s + 1]! * w;
        img[o + 2] = data[s + 2]! * w;
        img[o + 3] = data[s + 3]! * w;
      }
      continue;
    }
    for (let x = xa; x < xb; x++, s += step) {
      const o = (row + ((x / f) | 0)) * AUDIT_CHANNELS;
      img[o] = img[o]! + data[s]! * w;
      img[o + 1] = img[o + 1]! + data[s + 1]! * w;
      img[o + 2] = img[o + 2]! + data[s + 2]! * w;
      img[o + 3] = img[o + 3]! + data[s + 3]! * w;
    }
  }
  return img;
}

/**
 * Query side, written at row `row`: q̃ into `centred` (pixels × 4 per row) and the 0/1 mask into `mask` (pixels
 * per row); returns n (values under the mask), 0 for a constant query (it then correlates 0 with everything).
 */
export function prepareQuery(
  img: Float32Array,
  pixels: number,
  centred: Float32Array,
  mask: Float32Array,
  row: number,
): number {
  const level = (AUDIT_CHANNELS * MASK_LEVEL) / 255;
  const c0 = row * pixels * AUDIT_CHANNELS;
  const m0 = row * pixels;
  let count = 0;
  for (let p = 0; p < pixels; p++) {
    const i = p * AUDIT_CHANNELS;
    const on = img[i]! + img[i + 1]! + img[i + 2]! + img[i + 3]! > level;
    mask[m0 + p] = on ? 1 : 0;
    if (on) count++;
  }
  if (count < MIN_MASK_SHARE * pixels) {
    mask.fill(1, m0, m0 + pixels);
    count = pixels;
  }
  let sum = 0;
  for (let p = 0; p < pixels; p++) {
    if (mask[m0 + p] === 0) continue;
    const i = p * AUDIT_CHANNELS;
    sum += img[i]! + img[i + 1]! + img[i + 2]! + img[i + 3]!;
  }
  const n = count * AUDIT_CHANNELS;
  const mean = sum / n;
  let sq = 0;
  for (let p = 0; p < pixels; p++) {
    const on = mask[m0 + p] === 1;
    for (let c = 0; c < AUDIT_CHANNELS; c++) {
      const d = on ? img[p * AUDIT_CHANNELS + c]! - mean : 0;
      centred[c0 + p * AUDIT_CHANNELS + c] = d;
      sq += d * d;
    }
  }
  if (!(sq > 1e-12)) {
    centred.fill(0, c0, c0 + pixels * AUDIT_CHANNELS);
    return 0;
  }
  const scale = 1 / Math.sqrt(sq);
  for (let i = c0; i < c0 + pixels * AUDIT_CHANNELS; i++) centred[i] = centred[i]! * scale;
  return n;
}

/** Private side, written at row `row`: values (pixels × 4), per-pixel sums and per-pixel sums of squares. */
export function preparePrivate(
  img: Float32Array,
  pixels: number,
  values: Float32Array,
  sums: Float32Array,
  squares: Float32Array,
  row: number,
): void {
  values.set(img.subarray(0, pixels * AUDIT_CHANNELS), row * pixels * AUDIT_CHANNELS);
  for (let p = 0; p < pixels; p++) {
    const i = p * AUDIT_CHANNELS;
    const a = img[i]!;
    const b = img[i + 1]!;
    const c = img[i + 2]!;
    const d = img[i + 3]!;
    sums[row * pixels + p] = a + b + c + d;
    squares[row * pixels + p] = a * a + b * b + c * c + d * d;
  }
}

/** r from the three dot products (see the file comment); 0 when either side is constant under the mask. */
export function maskedPearson(num: number, s1: number, s2: number, n: number): number {
  if (n === 0) return 0;
  const variance = s2 - (s1 * s1) / n;
  if (!(variance > 1e-9)) return 0;
  const r = num / Math.sqrt(variance);
  return r > 1 ? 1 : r < -1 ? -1 : r;
}

/** A set of prepared rows (queries or private slices) of one resolution. */
export interface PreparedQueries {
  pixels: number;
  count: number;
  centred: Float32Array;
  mask: Float32Array;
  n: Float64Array;
}

export interface PreparedPrivates {
  pixels: number;
  count: number;
  values: Float32Array;
  sums: Float32Array;
  squares: Float32Array;
}

export function allocQueries(pixels: number, count: number): PreparedQueries {
  return {
    pixels,
    count,
    centred: new Float32Array(count * pixels * AUDIT_CHANNELS),
    mask: new Float32Array(count * pixels),
    n: new Float64Array(count),
  };
}

export function allocPrivates(pixels: number, count: number): PreparedPrivates {
  return {
    pixels,
    count,
    values: new Float32Array(count * pixels * AUDIT_CHANNELS),
    sums: new Float32Array(count * pixels),
    squares: new Float32Array(count * pixels),
  };
}

/** Masked Pearson of query row qi with private row pi, directly (the exact stage). */
export function pairScore(q: PreparedQueries, qi: number, p: PreparedPrivates, pi: number): number {
  const px = q.pixels;
  const d = px * AUDIT_CHANNELS;
  let num = 0;
  for (let i = 0, a = qi * d, b = pi * d; i < d; i++) num += q.centred[a + i]! * p.values[b + i]!;
  let s1 = 0;
  let s2 = 0;
  for (let i = 0, a = qi * px, b = pi * px; i < px; i++) {
    const m = q.mask[a + i]!;
    s1 += m * p.sums[b + i]!;
    s2 += m * p.squares[b + i]!;
  }
  return maskedPearson(num, s1, s2, q.n[qi]!);
}

/** The coarse side used by default: 16² up to 64² slices (shift-tolerant, cheap), 32² above. */
export function defaultCoarseSize(size: number): number {
  if (size <= 16) return size;
  return size >= 128 ? 32 : 16;
}

/** Centroids count pixels of mean image intensity above this: well clear of a generator's background noise. */
export const CENTROID_LEVEL = 32;

/** Centre of the bright foreground (mean image intensity above CENTROID_LEVEL) of a slice, mirrored as asked; the slice centre when blank. */
export function foregroundCentroid(
  data: Uint8Array,
  index: number,
  geometry: SliceGeometry,
  mirror = false,
): [number, number] {
  const { size, channels } = geometry;
  const base = index * size * size * channels;
  let sx = 0;
  let sy = 0;
  let count = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const s = base + (y * size + x) * channels;
      if (data[s]! + data[s + 1]! + data[s + 2]! + data[s + 3]! > AUDIT_CHANNELS * CENTROID_LEVEL) {
        sx += mirror ? size - 1 - x : x;
        sy += y;
        count++;
      }
    }
  }
  return count === 0 ? [(size - 1) / 2, (size - 1) / 2] : [sx / count, sy / count];
}

/** The shift that moves a slice's foreground centroid to the slice centre (the coarse search compares centred slices). */
export function centringShift(
  data: Uint8Array,
  index: number,
  geometry: SliceGeometry,
  mirror = false,
): [number, number] {
  const [cx, cy] = foregroundCentroid(data, index, geometry, mirror);
  const c = (geometry.size - 1) / 2;
  return [Math.round(c - cx), Math.round(c - cy)];
}
