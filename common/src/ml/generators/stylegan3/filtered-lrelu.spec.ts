import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { maxAbsDiff, randomArray, useWasm } from '../stylegan2/stylegan-spec-helpers.js';
import type { FirImpl } from '../stylegan2/upfirdn.js';
import { filteredLeakyRelu, type FilteredLeakyReluOptions } from './filtered-lrelu.js';
import { planStyleGan3, type StyleGan3LayerPlan } from './filters.js';
import { STYLEGAN3_PROFILES } from './stylegan3.js';

/**
 * The definition with explicit loops, in 2-D (not separably): bias; zero insertion ×up; pad/crop; true 2-D
 * convolution with up²·(fu ⊗ fu); lrelu·gain; true 2-D convolution with fd ⊗ fd; every down-th sample.
 */
function direct(
  x: Float32Array,
  [n, h, w, c]: readonly [number, number, number, number],
  bias: Float32Array,
  o: FilteredLeakyReluOptions,
): { data: Float64Array; shape: [number, number, number, number] } {
  const fu = o.upFilter ?? [1];
  const fd = o.downFilter ?? [1];
  const [p0, p1] = o.padding;
  // Upsampled, padded side and the filtered sides.
  const side0 = h * o.up + p0 + p1;
  const side0w = w * o.up + p0 + p1;
  const side1 = side0 - fu.length + 1;
  const side1w = side0w - fu.length + 1;
  const side2 = side1 - fd.length + 1;
  const side2w = side1w - fd.length + 1;
  const outH = Math.ceil(side2 / o.down);
  const outW = Math.ceil(side2w / o.down);
  const out = new Float64Array(n * outH * outW * c);
  const padded = (ni: number, y: number, xx: number, ci: number): number => {
    // index in the zero-inserted signal, before padding
    const uy = y - p0;
    const ux = xx - p0;
    if (uy < 0 || ux < 0 || uy % o.up !== 0 || ux % o.up !== 0) return 0;
    const iy = uy / o.up;
    const ix = ux / o.up;
    if (iy >= h || ix >= w) return 0;
    return x[((ni * h + iy) * w + ix) * c + ci]! + bias[ci]!;
  };
  for (let ni = 0; ni < n; ni++) {
    for (let ci = 0; ci < c; ci++) {
      const activated = new Float64Array(side1 * side1w);
      for (let y = 0; y < side1; y++) {
        for (let xx = 0; xx < side1w; xx++) {
          let sum = 0;
          for (let a = 0; a < fu.length; a++) {
            for (let b = 0; b < fu.length; b++) {
              const weight = fu[fu.length - 1 - a]! * fu[fu.length - 1 - b]! * o.up * o.up;
              sum += weight * padded(ni, y + a, xx + b, ci);
            }
          }
          const v = sum >= 0 ? sum : sum * o.slope;
          activated[y * side1w + xx] = v * o.gain;
        }
      }
      for (let oy = 0; oy < outH; oy++) {
        for (let ox = 0; ox < outW; ox++) {
          let sum = 0;
          for (let a = 0; a < fd.length; a++) {
            for (let b = 0; b < fd.length; b++) {
              const weight = fd[fd.length - 1 - a]! * fd[fd.length - 1 - b]!;
              sum += weight * activated[(oy * o.down + a) * side1w + ox * o.down + b]!;
            }
          }
          out[((ni * outH + oy) * outW + ox) * c + ci] = sum;
        }
      }
    }
  }
  return { data: out, shape: [n, outH, outW, c] };
}

function optionsOf(layer: StyleGan3LayerPlan): FilteredLeakyReluOptions {
  return {
    upFilter: layer.upFilter,
    downFilter: layer.downFilter,
    up: layer.up,
    down: layer.down,
    padding: layer.padding,
    gain: layer.isToRgb ? 1 : Math.SQRT2,
    slope: layer.isToRgb ? 1 : 0.2,
  };
}

describe('StyleGAN3 filtered leaky ReLU', () => {
  before(useWasm);

  const { layers } = planStyleGan3(STYLEGAN3_PROFILES.cpu);
  const cases: [string, StyleGan3LayerPlan, number][] = [
    ['×2 up / ×2 down, 12 taps each (L1)', layers[1]!, 10],
    ['×4 up (24 taps), crop −6/−9 (L2: the rate doubles)', layers[2]!, 16],
    ['critically sampled, crop −11/−12 (L7)', layers[7]!, 30],
    ['toRGB: no filters, linear', layers[8]!, 6],
  ];

  for (const impl of ['depthwise', 'slices'] as FirImpl[]) {
    it(`'${impl}' equals the direct upsample → lrelu → filter → downsample computation`, () => {
      for (const [label, layer, side] of cases) {
        const shape: [number, number, number, number] = [2, side, side, 3];
        const x = randomArray(`x${label}`, 2 * side * side * 3);
        const bias = randomArray(`b${label}`, 3, 0.3);
        const options = optionsOf(layer);
        const expected = direct(x, shape, bias, options);
        const got = tf.tidy(() =>
          filteredLeakyRelu(tf.tensor4d(x, shape), tf.tensor1d(bias), { ...options, impl }),
        );
        assert.deepEqual(got.shape, expected.shape, label);
        const diff = maxAbsDiff(got.dataSync(), expected.data);
        assert.ok(diff < 2e-5, `${impl} ${label}: max diff ${diff}`);
        got.dispose();
      }
    });
  }

  it('produces the planned layer size from the planned input size (+ k − 1 for the full conv)', () => {
    for (const layer of layers) {
      const side = layer.inSize + layer.convKernel - 1;
      const shape = tf.tidy(
        () =>
          filteredLeakyRelu(tf.zeros([1, side, side, 1]) as tf.Tensor4D, undefined, optionsOf(layer)).shape,
      );
      assert.deepEqual(shape, [1, layer.outSize, layer.outSize, 1], layer.name);
    }
  });
});
