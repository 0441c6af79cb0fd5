// StyleGAN3's input layer (networks_stylegan3.SynthesisInput): C Fourier features with fixed random
// frequencies f_c (uniform-ish in a disc of radius `bandwidth`) and phases φ_c, sampled on a grid of `size`
// pixels at `samplingRate`, rotated and translated per sample by an affine of w:
//   t = A(w) = (r_c, r_s, t_x, t_y) / ‖(r_c, r_s)‖        (A's weight starts at 0, bias at (1, 0, 0, 0))
//   feature_c(p) = sin(2π (f_cᵀ R (p − t) + φ_c)) · a_c,   R = [[r_c, −r_s], [r_s, r_c]]
// with a_c damping frequencies beyond the band (1 for untransformed ones), then a learned C×C linear map
// (weight / √C). p are pixel centres in units where the image spans samplingRate pixels per unit.
//
// The frequencies and phases are buffers in the official code (drawn at construction); here they are drawn from
// a seed in the architecture config, so a generator rebuilt from a weights blob (with any model seed) has the
// same ones, and FedAvg averages models that share them.
import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../../util/rng.js';
import type { ParamFactory } from '../../layers/index.js';
import { equalizedDense, type EqualizedDenseLayer } from '../gan/layers.js';

export interface FourierInputSpec {
  wDim: number;
  channels: number;
  size: number;
  samplingRate: number;
  bandwidth: number;
  /** Seed of the fixed frequencies and phases. */
  seed: number | string;
}

export interface FourierInput {
  spec: FourierInputSpec;
  /** w -> (r_c, r_s, t_x, t_y); kernel starts at 0, bias at (1, 0, 0, 0). */
  affine: EqualizedDenseLayer;
  /** [C, C], ~N(0, 1), used as weight / √C. */
  weight: tf.Variable;
  /** [C, 2] (x, y) frequencies and [C] phases: constants. */
  freqs: Float32Array;
  phases: Float32Array;
}

/** The official draw: f ~ N(0, I₂), f /= ‖f‖·exp(‖f‖²)^¼, f *= bandwidth; φ ~ U(−½, ½). */
export function fourierFrequencies(
  channels: number,
  bandwidth: number,
  seed: number | string,
): { freqs: Float32Array; phases: Float32Array } {
  const rng = createRng(`stylegan3-fourier/${seed}`);
  const freqs = new Float32Array(channels * 2);
  for (let c = 0; c < channels; c++) {
    const fx = rng.normal();
    const fy = rng.normal();
    const radius = Math.hypot(fx, fy);
    const scale = bandwidth / (radius * Math.exp(radius * radius) ** 0.25);
    freqs[2 * c] = fx * scale;
    freqs[2 * c + 1] = fy * scale;
  }
  const phases = Float32Array.from({ length: channels }, () => rng.next() - 0.5);
  return { freqs, phases };
}

export function createFourierInput(params: ParamFactory, spec: FourierInputSpec): FourierInput {
  const affineScope = params.scope('affine');
  const kernel = affineScope.variable('kernel', [spec.wDim, 4], { kind: 'zeros' });
  const bias = affineScope.variable('bias', [4], { kind: 'zeros' });
  tf.tidy(() => bias.assign(tf.tensor1d([1, 0, 0, 0])));
  const { freqs, phases } = fourierFrequencies(spec.channels, spec.bandwidth, spec.seed);
  return {
    spec,
    affine: { kernel, bias, weightScale: 1 / Math.sqrt(spec.wDim), biasScale: 1 },
    weight: params.variable('weight', [spec.channels, spec.channels], { kind: 'normal', std: 1 }),
    freqs,
    phases,
  };
}

/** Pixel-centre coordinates of a side of `size` samples at `samplingRate` (affine_grid, align_corners=False). */
export function gridCoordinates(size: number, samplingRate: number): Float32Array {
  return Float32Array.from({ length: size }, (_, i) => (i + 0.5 - size / 2) / samplingRate);
}

/** The raw Fourier features [N, size, size, C] for transform parameters t [N, 4] (before the C×C map). */
export function fourierFeatures(input: FourierInput, t: tf.Tensor2D): tf.Tensor4D {
  const { channels: C, size, samplingRate, bandwidth } = input.spec;
  const n = t.shape[0];
  const norm = tf.sqrt(tf.sum(tf.square(tf.slice(t, [0, 0], [n, 2])), 1, true));
  const tn = tf.div(t, norm);
  const [rc, rs, tx, ty] = tf.split(tn, 4, 1) as tf.Tensor2D[]; // each [N, 1]
  const fx = tf.tensor2d(
    input.freqs.filter((_, i) => i % 2 === 0),
    [1, C],
  );
  const fy = tf.tensor2d(
    input.freqs.filter((_, i) => i % 2 === 1),
    [1, C],
  );
  // Rotated frequencies f R and phases φ + f·R(−t), per sample [N, C].
  const fxr = tf.add(tf.mul(fx, rc), tf.mul(fy, rs));
  const fyr = tf.sub(tf.mul(fy, rc), tf.mul(fx, rs));
  const ux = tf.add(tf.neg(tf.mul(rc, tx)), tf.mul(rs, ty));
  const uy = tf.sub(tf.neg(tf.mul(rs, tx)), tf.mul(rc, ty));
  const phases = tf.add(tf.tensor2d(input.phases, [1, C]), tf.add(tf.mul(fx, ux), tf.mul(fy, uy)));
  // Dampen out-of-band frequencies (only a user transform that scales could create them).
  const radius = tf.sqrt(tf.add(tf.square(fxr), tf.square(fyr)));
  const amplitudes = tf.clipByValue(
    tf.sub(1, tf.div(tf.sub(radius, bandwidth), samplingRate / 2 - bandwidth)),
    0,
    1,
  );
  const grid = gridCoordinates(size, samplingRate);
  const gx = tf.tensor4d(grid, [1, 1, size, 1]);
  const gy = tf.tensor4d(grid, [1, size, 1, 1]);
  const perSample = (v: tf.Tensor) => tf.reshape(v, [n, 1, 1, C]);
  const argument = tf.add(tf.add(tf.mul(gx, perSample(fxr)), tf.mul(gy, perSample(fyr))), perSample(phases));
  return tf.mul(tf.sin(tf.mul(argument, 2 * Math.PI)), perSample(amplitudes)) as tf.Tensor4D;
}

/** w [N, wDim] -> [N, size, size, C]. */
export function runFourierInput(input: FourierInput, w: tf.Tensor2D): tf.Tensor4D {
  const t = equalizedDense(w, input.affine);
  const features = fourierFeatures(input, t);
  const [n, h, wd, c] = features.shape;
  const mapped = tf.matMul(tf.reshape(features, [n * h * wd, c]) as tf.Tensor2D, input.weight as tf.Tensor2D);
  return tf.reshape(tf.mul(mapped, 1 / Math.sqrt(c)), [n, h, wd, c]);
}
