// Layers every GAN family here uses (Karras et al.: ProGAN, StyleGAN 1/2/3), on the functional layer kit
// (common/src/ml/layers): equalized learning-rate conv/dense, pixel norm, minibatch standard deviation, leaky ReLU
// with gain. All ops are NHWC, pure, differentiable twice (R1 / WGAN-GP take gradients of gradients); call them
// inside tf.tidy.
import * as tf from '@tensorflow/tfjs';

import { ZEROS, type ParamFactory } from '../../layers/params.js';

// -----------------------------------------------------------------------------------------------------------
// Equalized learning rate

/**
 * Equalized learning rate (ProGAN §4.1, StyleGAN2's FullyConnectedLayer/Conv2dLayer): the stored weight is
 * ~N(0, 1/lrMultiplier²) and the layer uses weight · gain · lrMultiplier / √fanIn at run time, so every weight
 * sees the same effective learning rate under Adam. The bias is stored divided by lrMultiplier and used times it.
 *
 * gain: ProGAN puts √2 here (its layers have no activation gain); StyleGAN 2/3 use gain 1 and multiply the
 * activation by √2 instead (leakyReluGain). lrMultiplier: StyleGAN's mapping network uses 0.01.
 */
export interface EqualizedSpec {
  /** Default 1. */
  gain?: number;
  /** Default 1. */
  lrMultiplier?: number;
  /** Default true. */
  bias?: boolean;
  /** Initial (effective) bias value; default 0 (StyleGAN2's affine layers for styles use 1). */
  biasInit?: number;
}

export interface EqualizedDenseLayer {
  /** [in, out], ~N(0, 1/lrMultiplier²) */
  kernel: tf.Variable;
  bias?: tf.Variable;
  /** gain · lrMultiplier / √in */
  weightScale: number;
  /** lrMultiplier */
  biasScale: number;
}

export interface EqualizedConv2dLayer {
  /** [k, k, in, out], ~N(0, 1/lrMultiplier²) */
  kernel: tf.Variable;
  bias?: tf.Variable;
  /** gain · lrMultiplier / √(k·k·in) */
  weightScale: number;
  biasScale: number;
  kernelSize: number;
}

export function createEqualizedDense(
  params: ParamFactory,
  spec: EqualizedSpec & { inFeatures: number; outFeatures: number },
): EqualizedDenseLayer {
  const lrMultiplier = spec.lrMultiplier ?? 1;
  const kernel = params.variable('kernel', [spec.inFeatures, spec.outFeatures], {
    kind: 'normal',
    std: 1 / lrMultiplier,
  });
  const bias = makeBias(params, spec.outFeatures, spec, lrMultiplier);
  return {
    kernel,
    bias,
    weightScale: ((spec.gain ?? 1) * lrMultiplier) / Math.sqrt(spec.inFeatures),
    biasScale: lrMultiplier,
  };
}

export function createEqualizedConv2d(
  params: ParamFactory,
  spec: EqualizedSpec & { inChannels: number; outChannels: number; kernelSize: number },
): EqualizedConv2dLayer {
  const { inChannels, outChannels, kernelSize: k } = spec;
  const lrMultiplier = spec.lrMultiplier ?? 1;
  const kernel = params.variable('kernel', [k, k, inChannels, outChannels], {
    kind: 'normal',
    std: 1 / lrMultiplier,
  });
  const bias = makeBias(params, outChannels, spec, lrMultiplier);
  return {
    kernel,
    bias,
    weightScale: ((spec.gain ?? 1) * lrMultiplier) / Math.sqrt(k * k * inChannels),
    biasScale: lrMultiplier,
    kernelSize: k,
  };
}

function makeBias(
  params: ParamFactory,
  channels: number,
  spec: EqualizedSpec,
  lrMultiplier: number,
): tf.Variable | undefined {
  if (spec.bias === false) return undefined;
  const init = spec.biasInit ?? 0;
  if (init === 0) return params.variable('bias', [channels], ZEROS);
  const bias = params.variable('bias', [channels], { kind: 'ones' });
  if (init / lrMultiplier !== 1) tf.tidy(() => bias.assign(tf.fill([channels], init / lrMultiplier)));
  return bias;
}

/** The weight the layer actually uses: kernel · weightScale. */
export function equalizedKernel(layer: { kernel: tf.Variable; weightScale: number }): tf.Tensor {
  return tf.mul(layer.kernel, layer.weightScale);
}

/** The bias the layer actually uses: bias · biasScale (undefined without bias). */
export function equalizedBias(layer: { bias?: tf.Variable; biasScale: number }): tf.Tensor | undefined {
  if (!layer.bias) return undefined;
  return layer.biasScale === 1 ? layer.bias : tf.mul(layer.bias, layer.biasScale);
}

/** x [..., in] -> [..., out] with the runtime-scaled weight. */
export function equalizedDense<T extends tf.Tensor>(x: T, layer: EqualizedDenseLayer): T {
  const inFeatures = x.shape[x.rank - 1]!;
  const outFeatures = layer.kernel.shape[1]!;
  const rows = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D;
  const weight = equalizedKernel(layer) as tf.Tensor2D;
  let y: tf.Tensor = tf.matMul(rows, weight);
  const bias = equalizedBias(layer);
  if (bias) y = tf.add(y, bias);
  return tf.reshape(y, [...x.shape.slice(0, -1), outFeatures]) as T;
}

export interface EqualizedConvOptions {
  /** Default 1. */
  strides?: number;
  /** Default 'same'. */
  padding?: 'same' | 'valid';
}

/** NHWC convolution with the runtime-scaled weight (plain conv2d + add: both differentiable twice). */
export function equalizedConv2d(
  x: tf.Tensor4D,
  layer: EqualizedConv2dLayer,
  options: EqualizedConvOptions = {},
): tf.Tensor4D {
  const weight = equalizedKernel(layer) as tf.Tensor4D;
  const y = tf.conv2d(x, weight, options.strides ?? 1, options.padding ?? 'same');
  const bias = equalizedBias(layer);
  return bias ? tf.add(y, bias) : y;
}

// -----------------------------------------------------------------------------------------------------------
// Normalisation and statistics

/** Pixel-wise feature normalisation (ProGAN §4.2): x / √(mean over channels of x² + ε). Any rank, last axis. */
export function pixelNorm<T extends tf.Tensor>(x: T, epsilon = 1e-8): T {
  return tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), epsilon))) as T;
}

/** The group size minibatchStddev uses for a batch of n: the largest divisor of n not above groupSize. */
export function minibatchGroupSize(n: number, groupSize: number): number {
  let group = Math.max(1, Math.min(groupSize, n));
  while (n % group !== 0) group -= 1;
  return group;
}

/**
 * Minibatch standard deviation (ProGAN §3, StyleGAN2's MinibatchStdLayer), NHWC: the batch is split into groups
 * of G = minibatchGroupSize(N, groupSize) samples, sample i in group i mod (N/G) (the official reshape); per group
 * the std over its G samples of every feature, averaged over H, W and each of `numChannels` channel slices, is
 * appended as `numChannels` constant feature maps: [N, H, W, C] -> [N, H, W, C + numChannels]. StyleGAN2 requires
 * N % groupSize === 0; here a batch that does not divide uses a smaller group instead of failing.
 */
export function minibatchStddev(x: tf.Tensor4D, groupSize = 4, numChannels = 1): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  if (c % numChannels !== 0) {
    throw new Error(`minibatchStddev: ${c} channels do not split into ${numChannels} slices`);
  }
  const g = minibatchGroupSize(n, groupSize);
  const groups = n / g;
  const f = numChannels;
  let y: tf.Tensor = tf.reshape(x, [g, groups, h, w, f, c / f]);
  y = tf.sub(y, tf.mean(y, 0, true));
  y = tf.mean(tf.square(y), 0); // [groups, h, w, f, c/f]
  y = tf.sqrt(tf.add(y, 1e-8));
  y = tf.mean(y, [1, 2, 4]); // [groups, f]
  // Sample i gets its group's statistic (i = copy · groups + group). A broadcast multiply, not tf.tile: the Tile
  // gradient registered for training reshapes to rank 2·5 = 10, and the second derivative R1 needs then runs
  // binary ops at that rank, which tfjs-wasm (XNNPACK: at most 6 dimensions) silently computes as garbage.
  y = tf.mul(tf.reshape(y, [1, groups, 1, 1, f]), tf.ones([g, 1, h, w, 1]));
  return tf.concat([x, tf.reshape(y, [n, h, w, f])], 3);
}

// -----------------------------------------------------------------------------------------------------------
// Activations

/** StyleGAN's default gain for lrelu (def_gain in bias_act): √2. */
export const LRELU_GAIN = Math.SQRT2;

/** Leaky ReLU (slope 0.2) times gain (√2): StyleGAN 2/3's 'lrelu' activation with def_gain. */
export function leakyReluGain<T extends tf.Tensor>(x: T, slope = 0.2, gain = LRELU_GAIN): T {
  const y = tf.leakyRelu(x, slope);
  return (gain === 1 ? y : tf.mul(y, gain)) as T;
}

/**
 * The generators' output floor at black: y = −1 + softplus(k·(x + 1)) / k. Skull-stripped slices are exactly
 * black (−1) outside the brain in all five channels, and the annotation channel decodes to "no tumour" only
 * within 0.2 of −1; a linear output has to hit that value from both sides, a floored one only has to go below it
 * (where it stays, still differentiable). Above the floor y ≈ x (at x + 1 = 0.3 and k = 16: y + 1 = 0.30051).
 * k ≤ 0 or undefined: no floor (identity), which is what architecture configs without the setting get — callers
 * pass their config's optional `blackFloorSharpness` as it is.
 * `leak` > 0 adds leak·min(x + 1, 0): still black as bytes for x down to −1 − 0.1/leak, but the gradient below
 * black stays ≥ leak, where a flat floor's vanishes (≈ 1e-14 at x = −3) and an output channel that sank there
 * early — the annotation, black at ~99 % of pixels — cannot come back up to draw a tumour (StyleGAN 3 cpu32).
 */
export function blackFloor<T extends tf.Tensor>(x: T, sharpness: number | undefined, leak = 0): T {
  if (sharpness === undefined || !(sharpness > 0)) return x;
  return tf.tidy(() => {
    const floored = tf.sub(tf.div(tf.softplus(tf.mul(tf.add(x, 1), sharpness)), sharpness), 1);
    return leak > 0 ? tf.add(floored, tf.mul(tf.minimum(tf.add(x, 1), 0), leak)) : floored;
  }) as T;
}

/**
 * Every GAN config's output-floor settings (optional: configs made before them get a linear output). A type, not an
 * interface, so configs that include it stay assignable to Record<string, unknown>.
 */
export type BlackFloorSettings = {
  /** blackFloor's k; absent or 0: linear output. */
  blackFloorSharpness?: number;
  /** blackFloor's leak below black; absent: 0, a flat floor. */
  blackFloorLeak?: number;
};

/** A generator's output through its config's floor at black (blackFloor). Call inside tf.tidy. */
export function outputFloor<T extends tf.Tensor>(x: T, settings: BlackFloorSettings): T {
  return blackFloor(x, settings.blackFloorSharpness, settings.blackFloorLeak);
}

/** The generators' default floor sharpness (profiles set it; see blackFloor). */
export const BLACK_FLOOR_SHARPNESS = 16;

/** Nearest-neighbour ×factor upsampling (ProGAN, the lower-level outputs of progressive growing). */
export function upsampleNearest(x: tf.Tensor4D, factor = 2): tf.Tensor4D {
  if (factor === 1) return x;
  const [n, h, w, c] = x.shape;
  // Broadcast instead of ResizeNearestNeighbor: its gradient has no gradient of its own.
  const y = tf.mul(tf.reshape(x, [n, h, 1, w, 1, c]), tf.ones([1, 1, factor, 1, factor, 1]));
  return tf.reshape(y, [n, h * factor, w * factor, c]);
}

/** ×1/factor average pooling (box filter). */
export function downsampleAverage(x: tf.Tensor4D, factor = 2): tf.Tensor4D {
  if (factor === 1) return x;
  const [n, h, w, c] = x.shape;
  return tf.mean(tf.reshape(x, [n, h / factor, factor, w / factor, factor, c]), [2, 4]) as tf.Tensor4D;
}

// -----------------------------------------------------------------------------------------------------------
// FIR resampling (StyleGAN 1/2/3)

/** Normalised 2-D FIR kernel from 1-D taps (outer product), summing to `gain`: [k, k]. */
export function firKernel2d(taps: readonly number[], gain = 1): number[][] {
  const sum = taps.reduce((a, b) => a + b, 0);
  return taps.map((a) => taps.map((b) => (a * b * gain) / (sum * sum)));
}

export interface UpFirDnOptions {
  /** Zero-insertion upsampling factor (default 1). */
  up?: number;
  /** Downsampling factor (default 1): every down-th output pixel. */
  down?: number;
  /** Padding [before, after] of both spatial axes, applied after upsampling; negative crops (default [0, 0]). */
  padding?: readonly [number, number];
  /** Total gain of the filter (default 1; StyleGAN upsampling uses up²). */
  gain?: number;
}

/**
 * upfirdn2d-lite (StyleGAN2's upfirdn2d with a separable symmetric filter): upsample by zero insertion, pad, FIR
 * filter with outer(taps, taps) (normalised to `gain`), keep every down-th pixel. NHWC. Output side:
 * (H·up + pad0 + pad1 − k) / down + 1 (floor). The channels are folded into the batch and filtered by an ordinary
 * one-channel conv2d, because tfjs-core has no gradient of a depthwise conv's gradient (R1/WGAN-GP need one).
 */
export function upfirdn2d(
  x: tf.Tensor4D,
  taps: readonly number[],
  options: UpFirDnOptions = {},
): tf.Tensor4D {
  const up = options.up ?? 1;
  const down = options.down ?? 1;
  const [pad0, pad1] = options.padding ?? [0, 0];
  const k = taps.length;
  const [n, h, w, c] = x.shape;
  // [N, H, W, C] -> [N·C, H, W, 1]
  let y: tf.Tensor4D = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [n * c, h, w, 1]);
  let side = [h, w];
  if (up > 1) {
    const spread = tf.pad(tf.reshape(y, [n * c, h, 1, w, 1, 1]), [
      [0, 0],
      [0, 0],
      [0, up - 1],
      [0, 0],
      [0, up - 1],
      [0, 0],
    ]);
    side = [h * up, w * up];
    y = tf.reshape(spread, [n * c, side[0]!, side[1]!, 1]);
  }
  const positive = [Math.max(pad0, 0), Math.max(pad1, 0)];
  if (positive[0]! > 0 || positive[1]! > 0) {
    y = tf.pad(y, [[0, 0], positive as [number, number], positive as [number, number], [0, 0]]);
    side = side.map((s) => s + positive[0]! + positive[1]!);
  }
  if (pad0 < 0 || pad1 < 0) {
    const crop0 = Math.max(-pad0, 0);
    const crop1 = Math.max(-pad1, 0);
    side = side.map((s) => s - crop0 - crop1);
    y = tf.slice(y, [0, crop0, crop0, 0], [n * c, side[0]!, side[1]!, 1]);
  }
  const kernel = tf.tensor4d(firKernel2d(taps, options.gain ?? 1).flat(), [k, k, 1, 1]);
  y = tf.conv2d(y, kernel, down, 'valid');
  const [, oh, ow] = y.shape;
  return tf.transpose(tf.reshape(y, [n, c, oh, ow]), [0, 2, 3, 1]);
}
