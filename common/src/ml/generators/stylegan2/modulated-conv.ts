// StyleGAN2's modulated convolution (Karras et al. 2020, §2.2): per sample n the weight is
//   w'[n, ·, ·, i, o] = w[·, ·, i, o] · s[n, i]                          (modulation: styles scale input channels)
//   w''[n, ·, ·, i, o] = w' / √(Σ_{kh, kw, i} w'² + ε)                    (demodulation: unit norm per output)
// and sample n is convolved with its own w''. Three implementations of the same maths:
//
// - 'scaled' (default; the official code's training path, fused_modconv=False): x·s → one shared conv →
//   ·d[n, o], with d = 1/√(s² · Σ_kk w² + ε) computed as one [N, I]·[I, O] matmul. No per-sample weights at all;
//   every op has a differentiable gradient, so path-length regularisation (a gradient of a gradient through G)
//   works. Cheapest by far: the same cost as an ordinary conv.
// - 'grouped': the literal grouped convolution with the batch folded into the channels, written as ONE depthwise
//   convolution of [1, H, W, N·I] with channel multiplier O (per-sample weights [k, k, N·I, O]) followed by a sum
//   over I. tfjs has no grouped conv; this formulation materialises an [H, W, N·I·O] intermediate, so it is only
//   usable for small widths, and tfjs has no gradient of a depthwise conv's input gradient (first order only).
// - 'loop': one ordinary conv per sample with its own weights, then concat. First order only w.r.t. the styles
//   (Conv2DBackpropFilter has no gradient in tfjs).
//
// Upsampling convs (up = 2) are transposed convolutions with stride 2 and no padding ([N,H,W,I] -> [N,2H+k-2,…]),
// as StyleGAN2's conv2d_resample fast path; the caller applies the FIR filter afterwards.
import * as tf from '@tensorflow/tfjs';

export type ModConvImpl = 'scaled' | 'grouped' | 'loop';

export const DEMODULATION_EPSILON = 1e-8;

export interface ModulatedConvOptions {
  /** Normalise each output channel's modulated weights to unit L2 norm (false for toRGB). */
  demodulate: boolean;
  /** 1 (default) or 2: a transposed conv with stride 2 and no padding. */
  up?: 1 | 2;
  /**
   * For up = 1: 'same' (default; StyleGAN2), 'full' (pad k−1 on every side: StyleGAN3's padding=k−1, output
   * H+k−1), or 'valid'.
   */
  padding?: 'same' | 'full' | 'valid';
  /** A scalar (or [N]) gain on the input applied after demodulation (StyleGAN3's input_gain). */
  inputGain?: tf.Tensor | number;
  impl?: ModConvImpl;
}

/** The effective per-sample weights [N, k, k, I, O] (for tests and the 'grouped'/'loop' paths). */
export function modulatedWeights(kernel: tf.Tensor4D, styles: tf.Tensor2D, demodulate: boolean): tf.Tensor5D {
  const [k1, k2, inC, outC] = kernel.shape;
  const n = styles.shape[0];
  let w: tf.Tensor = tf.mul(
    tf.reshape(kernel, [1, k1, k2, inC, outC]),
    tf.reshape(styles, [n, 1, 1, inC, 1]),
  );
  if (demodulate) {
    const norms = tf.rsqrt(tf.add(tf.sum(tf.square(w), [1, 2, 3], true), DEMODULATION_EPSILON));
    w = tf.mul(w, norms);
  }
  return w as tf.Tensor5D;
}

/** Demodulation coefficients d[n, o] = 1/√(Σ_i s[n,i]²·Σ_kk w[·,·,i,o]² + ε), as one matmul. */
export function demodulationCoefficients(kernel: tf.Tensor4D, styles: tf.Tensor2D): tf.Tensor2D {
  const energy = tf.sum(tf.square(kernel), [0, 1]) as tf.Tensor2D; // [I, O]
  return tf.rsqrt(tf.add(tf.matMul(tf.square(styles), energy), DEMODULATION_EPSILON)) as tf.Tensor2D;
}

function padFor(kernelSize: number, padding: 'same' | 'full' | 'valid'): number {
  if (padding === 'valid') return 0;
  if (padding === 'full') return kernelSize - 1;
  if (kernelSize % 2 !== 1) throw new Error(`modulated conv: 'same' needs an odd kernel, got ${kernelSize}`);
  return (kernelSize - 1) / 2;
}

/** Plain conv (up 1, symmetric zero padding) or stride-2 transposed conv (up 2) with a shared [k,k,I,O] kernel. */
function sharedConv(x: tf.Tensor4D, kernel: tf.Tensor4D, up: 1 | 2, pad: number): tf.Tensor4D {
  const [k] = kernel.shape;
  if (up === 1) {
    // A numeric pad is symmetric explicit padding (the wasm kernels take it; ~10% faster than tf.pad + 'valid').
    return tf.conv2d(x, kernel, 1, pad === 0 ? 'valid' : pad);
  }
  const [n, h, w] = x.shape;
  const outC = kernel.shape[3];
  const filter = tf.transpose(kernel, [0, 1, 3, 2]) as tf.Tensor4D; // conv2dTranspose wants [k, k, out, in]
  return tf.conv2dTranspose(x, filter, [n, 2 * h + k - 2, 2 * w + k - 2, outC], 2, 'valid');
}

function applyInputGain(x: tf.Tensor4D, gain: tf.Tensor | number | undefined): tf.Tensor4D {
  if (gain === undefined || gain === 1) return x;
  if (typeof gain === 'number' || gain.rank === 0) return tf.mul(x, gain);
  return tf.mul(x, tf.reshape(gain, [-1, 1, 1, 1]));
}

/**
 * Modulated (and optionally demodulated) convolution. x [N, H, W, I], kernel [k, k, I, O] (the raw stored
 * weight: demodulation makes its scale irrelevant; non-demodulated layers pass styles already multiplied by
 * their weight gain), styles [N, I].
 */
export function modulatedConv2d(
  x: tf.Tensor4D,
  kernel: tf.Tensor4D,
  styles: tf.Tensor2D,
  options: ModulatedConvOptions,
): tf.Tensor4D {
  const up = options.up ?? 1;
  const impl = options.impl ?? 'scaled';
  const [k, , inC, outC] = kernel.shape;
  const [n, , , xC] = x.shape;
  if (xC !== inC || styles.shape[1] !== inC || styles.shape[0] !== n) {
    throw new Error(
      `modulated conv: x [${x.shape}] / styles [${styles.shape}] do not fit kernel [${kernel.shape}]`,
    );
  }
  if (up === 2 && options.padding !== undefined && options.padding !== 'valid') {
    throw new Error("modulated conv: up = 2 is a transposed conv without padding (padding 'valid')");
  }
  const pad = up === 2 ? 0 : padFor(k, options.padding ?? 'same');
  const input = applyInputGain(x, options.inputGain);

  if (impl === 'scaled') {
    const modulated = tf.mul(input, tf.reshape(styles, [n, 1, 1, inC])) as tf.Tensor4D;
    const y = sharedConv(modulated, kernel, up, pad);
    if (!options.demodulate) return y;
    const d = demodulationCoefficients(kernel, styles);
    return tf.mul(y, tf.reshape(d, [n, 1, 1, outC]));
  }

  const weights = modulatedWeights(kernel, styles, options.demodulate);
  if (impl === 'loop') {
    const xs = tf.split(input, n, 0) as tf.Tensor4D[];
    const ws = tf.split(weights, n, 0).map((w) => tf.reshape(w, [k, k, inC, outC]) as tf.Tensor4D);
    return tf.concat(
      xs.map((xi, i) => sharedConv(xi, ws[i]!, up, pad)),
      0,
    );
  }
  return groupedConv(input, weights, up, pad);
}

/**
 * The grouped convolution with the batch folded into the channels: x → [1, H, W, N·I]; per-sample weights →
 * a depthwise filter [k, k, N·I, O] (channel multiplier O); one depthwise conv gives [1, H', W', N·I·O], summed
 * over I. A stride-2 transposed conv is the same conv of the zero-inserted input padded by k−1 with the
 * spatially flipped kernel.
 */
function groupedConv(x: tf.Tensor4D, weights: tf.Tensor5D, up: 1 | 2, pad: number): tf.Tensor4D {
  const [n, , , inC] = x.shape;
  const [, k, , , outC] = weights.shape;
  let input: tf.Tensor4D = x;
  let w: tf.Tensor5D = weights;
  if (up === 2) {
    const [, h, wd] = x.shape;
    // Zero insertion: samples at even positions, length 2H−1.
    const spread = tf.pad(tf.reshape(x, [n, h, 1, wd, 1, inC]), [
      [0, 0],
      [0, 0],
      [0, 1],
      [0, 0],
      [0, 1],
      [0, 0],
    ]);
    const inserted = tf.slice(tf.reshape(spread, [n, 2 * h, 2 * wd, inC]), 0, [
      n,
      2 * h - 1,
      2 * wd - 1,
      inC,
    ]);
    input = tf.pad(inserted, [
      [0, 0],
      [k - 1, k - 1],
      [k - 1, k - 1],
      [0, 0],
    ]) as tf.Tensor4D;
    w = tf.reverse(weights, [1, 2]) as tf.Tensor5D;
  } else if (pad > 0) {
    input = tf.pad(x, [
      [0, 0],
      [pad, pad],
      [pad, pad],
      [0, 0],
    ]);
  }
  const [, hp, wp] = input.shape;
  const folded = tf.reshape(tf.transpose(input, [1, 2, 0, 3]), [1, hp, wp, n * inC]) as tf.Tensor4D;
  const filter = tf.reshape(tf.transpose(w, [1, 2, 0, 3, 4]), [k, k, n * inC, outC]) as tf.Tensor4D;
  const y = tf.depthwiseConv2d(folded, filter, 1, 'valid'); // [1, H', W', N·I·O]
  const [, ho, wo] = y.shape;
  const summed = tf.sum(tf.reshape(y, [ho, wo, n, inC, outC]), 3); // [H', W', N, O]
  return tf.transpose(summed, [2, 0, 1, 3]) as tf.Tensor4D;
}
