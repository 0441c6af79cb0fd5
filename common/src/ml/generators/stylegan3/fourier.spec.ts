import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { ParamFactory, disposeVariables } from '../../layers/index.js';
import { maxAbsDiff, randomTensor, useWasm } from '../stylegan2/stylegan-spec-helpers.js';
import {
  createFourierInput,
  fourierFeatures,
  fourierFrequencies,
  gridCoordinates,
  runFourierInput,
} from './fourier.js';

const SPEC = { wDim: 8, channels: 6, size: 12, samplingRate: 16, bandwidth: 2, seed: 3 };

describe('StyleGAN3 Fourier-feature input', () => {
  before(useWasm);

  it('draws frequencies inside the band and phases in [−½, ½), fixed by the seed', () => {
    const { freqs, phases } = fourierFrequencies(64, 2, 'a');
    for (let c = 0; c < 64; c++) {
      assert.ok(Math.hypot(freqs[2 * c]!, freqs[2 * c + 1]!) <= 2 + 1e-6);
      assert.ok(phases[c]! >= -0.5 && phases[c]! < 0.5);
    }
    assert.deepEqual(fourierFrequencies(64, 2, 'a'), { freqs, phases });
    assert.notDeepEqual(fourierFrequencies(64, 2, 'b').freqs, freqs);
    // Pixel centres: (i + ½ − size/2) / samplingRate.
    assert.deepEqual(Array.from(gridCoordinates(4, 8)), [-0.1875, -0.0625, 0.0625, 0.1875]);
  });

  it('equals sin(2π(fᵀR(θ)(p − t) + φ)) for a known rotation and translation (closed form)', () => {
    const params = ParamFactory.create(1, 'fourier-test');
    const input = createFourierInput(params, SPEC);
    const theta = [0, 0.7, -2.1];
    const translations = [
      [0, 0],
      [0.13, -0.05],
      [-0.3, 0.2],
    ];
    const scale = 2.5; // the affine's (r_c, r_s) need not be unit: everything is divided by their norm
    const t = theta.map((a, i) => [
      scale * Math.cos(a),
      scale * Math.sin(a),
      scale * translations[i]![0]!,
      scale * translations[i]![1]!,
    ]);
    const got = tf.tidy(() => fourierFeatures(input, tf.tensor2d(t)).dataSync());
    const grid = gridCoordinates(SPEC.size, SPEC.samplingRate);
    const expected = new Float64Array(got.length);
    theta.forEach((a, n) => {
      const [tx, ty] = translations[n]!;
      for (let i = 0; i < SPEC.size; i++) {
        for (let j = 0; j < SPEC.size; j++) {
          // p = (x, y) = (grid[j], grid[i]); R(θ)(p − t)
          const dx = grid[j]! - tx!;
          const dy = grid[i]! - ty!;
          const rx = Math.cos(a) * dx - Math.sin(a) * dy;
          const ry = Math.sin(a) * dx + Math.cos(a) * dy;
          for (let c = 0; c < SPEC.channels; c++) {
            const phase = input.freqs[2 * c]! * rx + input.freqs[2 * c + 1]! * ry + input.phases[c]!;
            expected[((n * SPEC.size + i) * SPEC.size + j) * SPEC.channels + c] = Math.sin(
              2 * Math.PI * phase,
            );
          }
        }
      }
    });
    assert.ok(maxAbsDiff(got, expected) < 2e-5, `max diff ${maxAbsDiff(got, expected)}`);
    disposeVariables(params.variables);
  });

  it('at initialisation (affine weight 0, bias (1, 0, 0, 0)) gives the untransformed features through the C×C map', () => {
    const params = ParamFactory.create(2, 'fourier-test');
    const input = createFourierInput(params, SPEC);
    tf.tidy(() => {
      const w = randomTensor('w', [2, SPEC.wDim]) as tf.Tensor2D;
      const out = runFourierInput(input, w);
      assert.deepEqual(out.shape, [2, SPEC.size, SPEC.size, SPEC.channels]);
      const raw = fourierFeatures(input, tf.tensor2d([[1, 0, 0, 0]]));
      const mapped = tf.div(
        tf.matMul(tf.reshape(raw, [-1, SPEC.channels]), input.weight),
        Math.sqrt(SPEC.channels),
      );
      const first = tf.slice(out, [0, 0, 0, 0], [1, -1, -1, -1]).dataSync();
      const second = tf.slice(out, [1, 0, 0, 0], [1, -1, -1, -1]).dataSync();
      assert.ok(maxAbsDiff(first, mapped.dataSync()) < 1e-5);
      assert.ok(maxAbsDiff(second, mapped.dataSync()) < 1e-5);
    });
    disposeVariables(params.variables);
  });
});
