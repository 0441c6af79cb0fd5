// upfirdn2d (StyleGAN2/3's resampling primitive) for NHWC tensors with separable 1-D FIR filters: per axis,
// upsample by zero insertion, pad (negative = crop), convolve with the filter, keep every `down`-th sample.
// Exactly the official upfirdn2d's maths (true convolution, i.e. the filter is flipped; upsampled samples at
// multiples of `up`; output length ceil((n·up + pad0 + pad1 − taps + 1) / down)), with the gain folded into the
// filter by the caller.
//
// Two implementations of the same maths:
// - 'slices' (default): polyphase sums of shifted slices. Only Slice/Pad/Concat/Reshape/Mul/AddN, whose gradients
//   are themselves differentiable, so R1 (through D) and path-length regularisation (through G) can take a
//   gradient of a gradient. Upsampling never multiplies the inserted zeros (one sub-filter per output phase).
// - 'depthwise': the same polyphase structure as depthwise convolutions (one [taps, 1] or [1, taps] filter,
//   tiled over the channels, zero-padded to a tap count XNNPACK runs fast, optionally cached by the model).
//   Faster and far leaner in memory for the long windowed-sinc filters of StyleGAN3, but tfjs has no gradient
//   for DepthwiseConv2dNativeBackpropInput, so it is first order only (fine for a generator without path-length
//   regularisation, as in StyleGAN3's recipe).
import * as tf from '@tensorflow/tfjs';

export type FirImpl = 'slices' | 'depthwise';

export interface UpFirDn1dOptions {
  /** Zero-insertion factor (≥ 1). up > 1 and down > 1 together are not supported (not needed). */
  up?: number;
  /** Decimation factor (≥ 1). */
  down?: number;
  /** Padding before / after the (upsampled) signal; negative values crop. */
  pad0?: number;
  pad1?: number;
  impl?: FirImpl;
  /** 'depthwise': reuse filter tensors from this cache (owned by the caller). */
  filterCache?: FirFilterCache;
}

/** Output length of upfirdn along one axis. */
export function upfirdnLength(
  n: number,
  taps: number,
  up: number,
  down: number,
  pad0: number,
  pad1: number,
): number {
  const filtered = n * up + pad0 + pad1 - taps + 1;
  if (filtered < 1) {
    throw new Error(`upfirdn: nothing left (n ${n}, taps ${taps}, up ${up}, pad ${pad0}/${pad1})`);
  }
  return Math.ceil(filtered / down);
}

function sliceAxis<T extends tf.Tensor>(x: T, axis: number, start: number, size: number): T {
  if (start === 0 && size === x.shape[axis]) return x;
  const begin = x.shape.map((_, i) => (i === axis ? start : 0));
  const sizes = x.shape.map((s, i) => (i === axis ? size : s));
  return tf.slice(x, begin, sizes) as T;
}

function padAxis<T extends tf.Tensor>(x: T, axis: number, before: number, after: number): T {
  if (before === 0 && after === 0) return x;
  const paddings = x.shape.map((_, i) => (i === axis ? [before, after] : [0, 0])) as [number, number][];
  return tf.pad(x, paddings) as T;
}

/** Pads (positive) or crops (negative) both ends of one axis. */
function padOrCrop<T extends tf.Tensor>(x: T, axis: number, before: number, after: number): T {
  const n = x.shape[axis]!;
  const cropBefore = Math.max(-before, 0);
  const cropAfter = Math.max(-after, 0);
  const cropped = sliceAxis(x, axis, cropBefore, n - cropBefore - cropAfter);
  return padAxis(cropped, axis, Math.max(before, 0), Math.max(after, 0));
}

/** Σ_t h[t]·x[start + t + i] for i < count along `axis`: a correlation with h (skipping zero taps). */
function correlate<T extends tf.Tensor>(
  x: T,
  axis: number,
  h: readonly number[],
  start: number,
  count: number,
  impl: FirImpl,
  cache?: FirFilterCache,
): T {
  if (impl === 'depthwise' && h.length > 1) {
    return depthwiseCorrelate(x as unknown as tf.Tensor4D, axis, h, start, count, 1, cache) as unknown as T;
  }
  const terms: tf.Tensor[] = [];
  h.forEach((weight, t) => {
    if (weight === 0) return;
    const part = sliceAxis(x, axis, start + t, count);
    terms.push(weight === 1 ? part : tf.mul(part, weight));
  });
  if (terms.length === 0) {
    return tf.zeros(x.shape.map((s, i) => (i === axis ? count : s))) as T;
  }
  return (terms.length === 1 ? terms[0]! : tf.addN(terms)) as T;
}

/**
 * Tap counts XNNPACK's depthwise convolution runs with its fast single-pass kernels (measured on wasm, 8×86×86×32:
 * 3, 4, 9 and 25 taps take 5–10 ms, 5–8 and 10–16 taps 16–35 ms). Filters are zero-padded up to the next one.
 */
const FAST_DEPTHWISE_TAPS = [3, 4, 9, 25] as const;

export function paddedDepthwiseTaps(taps: number): number {
  return FAST_DEPTHWISE_TAPS.find((fast) => fast >= taps) ?? taps;
}

/**
 * Depthwise filter tensors by (taps, channels, axis), owned by a model (tf.keep'd when created, disposed with
 * it), so repeated forward passes reuse the tensor (and wasm its packed XNNPACK operator) instead of creating one
 * per call.
 */
export class FirFilterCache {
  private readonly filters = new Map<string, tf.Tensor4D>();

  get(h: readonly number[], channels: number, axis: 1 | 2): tf.Tensor4D {
    const key = `${axis}|${channels}|${h.join(',')}`;
    let filter = this.filters.get(key);
    if (!filter) {
      filter = tf.keep(depthwiseFilter(h, channels, axis));
      this.filters.set(key, filter);
    }
    return filter;
  }

  get size(): number {
    return this.filters.size;
  }

  dispose(): void {
    for (const filter of this.filters.values()) filter.dispose();
    this.filters.clear();
  }
}

function depthwiseFilter(h: readonly number[], channels: number, axis: 1 | 2): tf.Tensor4D {
  const taps = h.length;
  const values = new Float32Array(taps * channels);
  for (let t = 0; t < taps; t++) values.fill(h[t]!, t * channels, (t + 1) * channels);
  return tf.tensor4d(values, axis === 1 ? [taps, 1, channels, 1] : [1, taps, channels, 1]);
}

/**
 * out[i] = Σ_t h[t]·x[start + i·stride + t], i < count, as a 'valid' depthwise conv along H or W of an NHWC
 * tensor with the same 1-D filter on every channel; the filter is zero-padded to a fast tap count and x
 * zero-extended as far as that reads.
 */
function depthwiseCorrelate(
  x: tf.Tensor4D,
  axis: number,
  h: readonly number[],
  start: number,
  count: number,
  stride: number,
  cache?: FirFilterCache,
): tf.Tensor4D {
  if (axis !== 1 && axis !== 2) throw new Error('upfirdn depthwise: axis must be 1 (H) or 2 (W)');
  const taps = paddedDepthwiseTaps(h.length);
  const padded = taps === h.length ? h : [...h, ...new Array<number>(taps - h.length).fill(0)];
  const needed = (count - 1) * stride + taps;
  const available = x.shape[axis] - start;
  const window = padAxis(
    sliceAxis(x, axis, start, Math.min(needed, available)),
    axis,
    0,
    Math.max(0, needed - available),
  );
  const channels = x.shape[3];
  const filter = cache ? cache.get(padded, channels, axis) : depthwiseFilter(padded, channels, axis);
  const strides: [number, number] = axis === 1 ? [stride, 1] : [1, stride];
  return tf.depthwiseConv2d(window, filter, strides, 'valid');
}

/**
 * upfirdn along one axis of x (rank ≥ 1; 'depthwise' needs NHWC and axis 1 or 2). `f` is the filter in
 * convolution order (flipped here, as upfirdn2d does by default; the filters used are symmetric anyway).
 */
export function upfirdn1d<T extends tf.Tensor>(
  x: T,
  axis: number,
  f: readonly number[],
  options: UpFirDn1dOptions = {},
): T {
  const up = options.up ?? 1;
  const down = options.down ?? 1;
  const pad0 = options.pad0 ?? 0;
  const pad1 = options.pad1 ?? 0;
  const impl = options.impl ?? 'slices';
  const cache = options.filterCache;
  if (!(Number.isInteger(up) && up >= 1 && Number.isInteger(down) && down >= 1)) {
    throw new Error(`upfirdn: bad factors up ${up}, down ${down}`);
  }
  if (up > 1 && down > 1) throw new Error('upfirdn: up and down at once is not supported');
  const n = x.shape[axis]!;
  const taps = f.length;
  const g = [...f].reverse(); // true convolution → correlation with the flipped filter
  const outLength = upfirdnLength(n, taps, up, down, pad0, pad1);

  // Samples a correlation with `count` taps reads (depthwise filters are zero-padded to a fast tap count, so the
  // signal is zero-extended once here rather than per window).
  const readTaps = (count: number) =>
    impl === 'depthwise' && count > 1 ? paddedDepthwiseTaps(count) : count;

  if (up === 1) {
    // out[o] = Σ_k g[k]·xp[o·down + k] with xp = x padded by pad0 in front.
    const needed = (outLength - 1) * down + readTaps(taps); // samples of xp read
    const xp = padOrCrop(x, axis, pad0, needed - (n + pad0));
    if (down === 1) return correlate(xp, axis, g, 0, outLength, impl, cache);
    if (impl === 'depthwise' && taps > 1) {
      return depthwiseCorrelate(
        xp as unknown as tf.Tensor4D,
        axis,
        g,
        0,
        outLength,
        down,
        cache,
      ) as unknown as T;
    }
    // Phase split: xp[o·down + k] = phases[k mod down][o + ⌊k/down⌋].
    const rows = Math.ceil(needed / down);
    const split = padAxis(xp, axis, 0, rows * down - needed);
    const shaped = tf.reshape(split, [
      ...split.shape.slice(0, axis),
      rows,
      down,
      ...split.shape.slice(axis + 1),
    ]);
    const terms: tf.Tensor[] = [];
    for (let phase = 0; phase < down; phase++) {
      const phaseTaps = g.filter((_, k) => k % down === phase);
      if (phaseTaps.every((w) => w === 0)) continue;
      const column = tf.squeeze(sliceAxis(shaped, axis + 1, phase, 1), [axis + 1]);
      terms.push(correlate(column, axis, phaseTaps, 0, outLength, 'slices'));
    }
    if (terms.length === 0) throw new Error('upfirdn: all-zero filter');
    return (terms.length === 1 ? terms[0]! : tf.addN(terms)) as T;
  }

  // up > 1, down = 1: the output's phases, interleaved. Concat of expanded dims rather than tf.stack: the
  // gradient of Pack is Unpack, very slow on wasm.
  const outputs = upfirdnPhases(x, axis, f, { up, pad0, pad1, impl, filterCache: cache });
  const perPhase = outputs[0]!.shape[axis]!;
  const stacked = tf.concat(
    outputs.map((o) => tf.expandDims(o, axis + 1)),
    axis + 1,
  );
  const merged = tf.reshape(stacked, [...x.shape.slice(0, axis), perPhase * up, ...x.shape.slice(axis + 1)]);
  return sliceAxis(merged, axis, 0, outLength) as T;
}

/**
 * The polyphase components of upfirdn with up > 1 (down 1) along `axis`, without interleaving them: phase p holds
 * outputs j = up·i + p, i < ⌈L/up⌉ (L the output length; a phase's last sample may lie beyond L and is then
 * meaningless). Output j reads the zero-inserted signal at j + k − pad0, non-zero only at multiples of up, i.e.
 * x[i + (p + k − pad0)/up]: per phase a correlation of x with the taps g[k0], g[k0 + up], ...
 */
export function upfirdnPhases<T extends tf.Tensor>(
  x: T,
  axis: number,
  f: readonly number[],
  options: UpFirDn1dOptions & { up: number },
): T[] {
  const { up } = options;
  const pad0 = options.pad0 ?? 0;
  const pad1 = options.pad1 ?? 0;
  const impl = options.impl ?? 'slices';
  const n = x.shape[axis]!;
  const taps = f.length;
  const g = [...f].reverse();
  const perPhase = Math.ceil(upfirdnLength(n, taps, up, 1, pad0, pad1) / up);
  const readTaps = (count: number) =>
    impl === 'depthwise' && count > 1 ? paddedDepthwiseTaps(count) : count;
  const phases: { taps: number[]; offset: number }[] = [];
  let minOffset = 0;
  let maxEnd = n;
  for (let p = 0; p < up; p++) {
    const k0 = (((pad0 - p) % up) + up) % up;
    const phaseTaps: number[] = [];
    for (let k = k0; k < taps; k += up) phaseTaps.push(g[k]!);
    const offset = (p + k0 - pad0) / up;
    phases.push({ taps: phaseTaps, offset });
    minOffset = Math.min(minOffset, offset);
    maxEnd = Math.max(maxEnd, offset + perPhase - 1 + Math.max(readTaps(phaseTaps.length), 1));
  }
  const front = -minOffset;
  const xp = padAxis(x, axis, front, maxEnd - n);
  return phases.map(({ taps: phaseTaps, offset }) =>
    phaseTaps.length === 0
      ? (tf.zeros(xp.shape.map((s, i) => (i === axis ? perPhase : s))) as T)
      : correlate(xp, axis, phaseTaps, front + offset, perPhase, impl, options.filterCache),
  );
}

/**
 * upfirdn with down = 2 (no up, no padding) applied to a signal given as its two polyphase components (as
 * upfirdnPhases with up = 2 returns them), without interleaving: out[o] = Σ_k g[k]·v[2o + k] and sample 2o + k
 * lies in phase k mod 2 at o + ⌊k/2⌋, so each phase is correlated with every other tap at stride 1. `length` is
 * the interleaved signal's length.
 */
export function downsamplePhases<T extends tf.Tensor>(
  phases: readonly [T, T],
  axis: number,
  f: readonly number[],
  length: number,
  options: Pick<UpFirDn1dOptions, 'impl' | 'filterCache'> = {},
): T {
  const taps = f.length;
  const g = [...f].reverse();
  const outLength = upfirdnLength(length, taps, 1, 2, 0, 0);
  const impl = options.impl ?? 'slices';
  const terms = phases.map((phase, p) => {
    const phaseTaps = g.filter((_, k) => k % 2 === p);
    // Depthwise windows may read past the phase (zero-padded filter taps): extend it with zeros once.
    const read =
      impl === 'depthwise' && phaseTaps.length > 1 ? paddedDepthwiseTaps(phaseTaps.length) : phaseTaps.length;
    const extended = padAxis(phase, axis, 0, Math.max(0, outLength + read - 1 - phase.shape[axis]!));
    return correlate(extended, axis, phaseTaps, 0, outLength, impl, options.filterCache);
  });
  return tf.add(terms[0]!, terms[1]!) as T;
}

export interface UpFirDn2dOptions {
  up?: number;
  down?: number;
  /** [x0, x1, y0, y1] as upfirdn2d: x = width (axis 2), y = height (axis 1). Default 0. */
  padding?: readonly [number, number, number, number];
  /** Overall gain (upfirdn2d's `gain`), split as √gain per axis. Default 1. */
  gain?: number;
  impl?: FirImpl;
  filterCache?: FirFilterCache;
}

/** Separable upfirdn2d on NHWC: the same 1-D filter along H, then along W. */
export function upfirdn2d(x: tf.Tensor4D, f: readonly number[], options: UpFirDn2dOptions = {}): tf.Tensor4D {
  const [px0, px1, py0, py1] = options.padding ?? [0, 0, 0, 0];
  const axisGain = Math.sqrt(options.gain ?? 1);
  const scaled = axisGain === 1 ? f : f.map((v) => v * axisGain);
  const common = { up: options.up, down: options.down, impl: options.impl, filterCache: options.filterCache };
  const alongH = upfirdn1d(x, 1, scaled, { ...common, pad0: py0, pad1: py1 });
  return upfirdn1d(alongH, 2, scaled, { ...common, pad0: px0, pad1: px1 });
}

/** StyleGAN2's resample filter: binomial [1, 3, 3, 1], normalised to sum 1. */
export const BINOMIAL_FILTER: readonly number[] = [1 / 8, 3 / 8, 3 / 8, 1 / 8];

/** upfirdn2d.upsample2d: ×2 with the 4-tap filter, gain 4, padding [2, 1]; [N,H,W,C] -> [N,2H,2W,C]. */
export function upsample2d(x: tf.Tensor4D, f: readonly number[] = BINOMIAL_FILTER): tf.Tensor4D {
  const taps = f.length;
  const p0 = Math.floor((taps + 1) / 2);
  const p1 = Math.floor((taps - 2) / 2);
  return upfirdn2d(x, f, { up: 2, padding: [p0, p1, p0, p1], gain: 4 });
}

/** upfirdn2d.downsample2d: low-pass then ×1/2 with padding [1, 1]; [N,H,W,C] -> [N,H/2,W/2,C]. */
export function downsample2d(x: tf.Tensor4D, f: readonly number[] = BINOMIAL_FILTER): tf.Tensor4D {
  const taps = f.length;
  const p0 = Math.floor((taps - 1) / 2);
  const p1 = Math.floor((taps - 2) / 2);
  return upfirdn2d(x, f, { down: 2, padding: [p0, p1, p0, p1] });
}
