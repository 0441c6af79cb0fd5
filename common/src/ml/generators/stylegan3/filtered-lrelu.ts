// StyleGAN3's filtered nonlinearity (filtered_lrelu's reference path, _filtered_lrelu_ref): add the bias,
// upsample by `up` with the low-pass up-filter (gain up², with the layer's padding), leaky ReLU (slope, times
// gain), low-pass with the down-filter and keep every `down`-th sample. The nonlinearity thus runs at a higher
// sampling rate and the high frequencies it creates are filtered out before decimation (alias-free, §3.2).
import * as tf from '@tensorflow/tfjs';

import {
  downsamplePhases,
  upfirdn2d,
  upfirdnLength,
  upfirdnPhases,
  type FirFilterCache,
  type FirImpl,
} from '../stylegan2/upfirdn.js';

export interface FilteredLeakyReluOptions {
  /** Separable 1-D up-filter, undefined = no filtering (a single unit tap). */
  upFilter?: readonly number[];
  downFilter?: readonly number[];
  up: number;
  down: number;
  /** Padding [before, after] on both axes, applied with the upsampling (negative crops). */
  padding: readonly [number, number];
  /** Gain after the activation (√2 for lrelu, 1 for toRGB). */
  gain: number;
  /** Negative slope (0.2; 1 = linear for toRGB). */
  slope: number;
  impl?: FirImpl;
  /** 'depthwise': the model's cache of filter tensors. */
  filterCache?: FirFilterCache;
}

const UNIT: readonly number[] = [1];

export function filteredLeakyRelu(
  x: tf.Tensor4D,
  bias: tf.Tensor | undefined,
  options: FilteredLeakyReluOptions,
): tf.Tensor4D {
  const { up, down, padding, gain, slope, impl, filterCache } = options;
  const y: tf.Tensor4D = bias ? tf.add(x, bias) : x;
  const [p0, p1] = padding;
  const activate = (t: tf.Tensor4D): tf.Tensor4D => {
    const a = slope === 1 ? t : tf.leakyRelu(t, slope);
    return gain === 1 ? a : tf.mul(a, gain);
  };
  const common = { impl, filterCache };
  if (up === 2 && down === 2 && options.upFilter && options.downFilter) {
    // ×2 up and ×2 down (most layers): stay in the polyphase domain. The 2×2 phases of the upsampled map are
    // computed separately, activated (pointwise) and decimated phase by phase, so the upsampled map is never
    // interleaved (no concat / split in forward and backward) and no multiply touches an inserted zero.
    const fu = options.upFilter.map((v) => v * up);
    const [, h, w] = y.shape;
    const lengthH = upfirdnLength(h, fu.length, up, 1, p0, p1);
    const lengthW = upfirdnLength(w, fu.length, up, 1, p0, p1);
    const rows = upfirdnPhases(y, 1, fu, { up, pad0: p0, pad1: p1, ...common });
    const quads = rows.map((row) =>
      upfirdnPhases(row, 2, fu, { up, pad0: p0, pad1: p1, ...common }).map(activate),
    );
    const columns = [0, 1].map((pw) =>
      downsamplePhases([quads[0]![pw]!, quads[1]![pw]!], 1, options.downFilter!, lengthH, common),
    );
    return downsamplePhases([columns[0]!, columns[1]!], 2, options.downFilter, lengthW, common);
  }
  const upsampled = upfirdn2d(y, options.upFilter ?? UNIT, {
    up,
    padding: [p0, p1, p0, p1],
    gain: up * up,
    ...common,
  });
  const activated = activate(upsampled);
  if (!options.downFilter && down === 1) return activated;
  return upfirdn2d(activated, options.downFilter ?? UNIT, { down, ...common });
}
