import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../../backend/index.js';

import {
  nonSaturatingDiscriminatorLoss,
  nonSaturatingGeneratorLoss,
  pathLengthPenalty,
  r1Penalty,
  registerHigherOrderGradients,
  wganGeneratorLoss,
  wganGpDiscriminatorLoss,
} from './losses.js';
import { buildTinyDcganDiscriminator } from './testing/tiny-dcgan.js';

const softplus = (x: number) => Math.log1p(Math.exp(x));
const close = (actual: number, expected: number, tolerance = 1e-5) =>
  assert.ok(
    Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)),
    `${actual} vs ${expected}`,
  );
const value = (t: tf.Tensor) => t.dataSync()[0]!;

describe('GAN losses (closed forms on tiny inputs)', () => {
  before(() => selectBackend({ prefer: 'wasm', logger: () => {} }));

  it('non-saturating logistic losses are softplus means', () => {
    tf.tidy(() => {
      const real = tf.tensor1d([1, -2, 0.5]);
      const fake = tf.tensor2d([[0.3], [-1]]);
      close(value(nonSaturatingGeneratorLoss(fake)), (softplus(-0.3) + softplus(1)) / 2);
      close(
        value(nonSaturatingDiscriminatorLoss(real, fake)),
        (softplus(0.3) + softplus(-1)) / 2 + (softplus(-1) + softplus(2) + softplus(-0.5)) / 3,
      );
      close(value(wganGeneratorLoss(fake)), -(0.3 - 1) / 2);
      assert.throws(() => nonSaturatingGeneratorLoss(tf.zeros([2, 2])), /\[N\] or \[N, 1\]/);
    });
  });

  it('R1 of a linear D is γ/2·‖w‖²·k, and its weight gradient (a gradient of a gradient) is γ·w·k', () => {
    tf.tidy(() => {
      const w = tf.variable(tf.tensor4d([0.5, -1, 2, 0.25, 1, -0.5, 0, 3], [1, 2, 2, 2]));
      const score = (x: tf.Tensor4D) => tf.sum(tf.mul(x, w), [1, 2, 3]);
      const reals = tf.randomNormal([3, 2, 2, 2], 0, 1, 'float32', 1) as tf.Tensor4D;
      const normSq = 0.25 + 1 + 4 + 0.0625 + 1 + 0.25 + 0 + 9;
      const { value: penalty, grads } = tf.variableGrads(
        () => r1Penalty(score, reals, { gamma: 10, interval: 4 }),
        [w],
      );
      close(value(penalty), 5 * normSq * 4);
      const expected = w.dataSync().map((v) => 10 * v * 4);
      grads[w.name]!.dataSync().forEach((g, i) => close(g, expected[i]!));
      w.dispose();
    });
  });

  it('WGAN-GP of a linear D: E[D(G(z))] − E[D(x)] + λ(‖w‖ − 1)² + ε·E[D(x)²]', () => {
    tf.tidy(() => {
      const w = tf.tensor4d([0.6, 0, -0.8, 0.5], [1, 2, 2, 1]);
      const score = (x: tf.Tensor4D) => tf.sum(tf.mul(x, w), [1, 2, 3]);
      const reals = tf.tensor4d([1, 2, 3, 4, -1, 0, 1, 0], [2, 2, 2, 1]);
      const fakes = tf.tensor4d([0, 1, 0, 1, 2, 2, 2, 2], [2, 2, 2, 1]);
      const terms = wganGpDiscriminatorLoss(score, reals, fakes, { alpha: tf.tensor1d([0.3, 0.9]) });
      const d = (x: number[]) => x.reduce((sum, v, i) => sum + v * [0.6, 0, -0.8, 0.5][i]!, 0);
      const realScores = [d([1, 2, 3, 4]), d([-1, 0, 1, 0])];
      const fakeScores = [d([0, 1, 0, 1]), d([2, 2, 2, 2])];
      const mean = (v: number[]) => v.reduce((a, b) => a + b) / v.length;
      const norm = Math.sqrt(0.36 + 0.64 + 0.25);
      const gp = 10 * (norm - 1) ** 2;
      const drift = 0.001 * mean(realScores.map((s) => s * s));
      close(value(terms.gradientPenalty), gp);
      close(value(terms.drift), drift);
      close(value(terms.wasserstein), mean(realScores) - mean(fakeScores));
      close(value(terms.loss), mean(fakeScores) - mean(realScores) + gp + drift);
    });
  });

  it('path length of a linear synthesis: lengths = √(mean over layers of ‖Kᵀy‖²), penalty against the moved mean', () => {
    tf.tidy(() => {
      const [n, layers, dim, h, wide, c] = [2, 2, 3, 2, 2, 1];
      const k = tf.randomNormal([layers * dim, h * wide * c], 0, 1, 'float32', 2) as tf.Tensor2D;
      const synthesize = (ws: tf.Tensor3D) =>
        tf.reshape(tf.matMul(tf.reshape(ws, [n, -1]), k), [n, h, wide, c]) as tf.Tensor4D;
      const ws = tf.randomNormal([n, layers, dim], 0, 1, 'float32', 3) as tf.Tensor3D;
      const terms = pathLengthPenalty(synthesize, ws, { mean: tf.scalar(0.5), decay: 0.1, noiseSeed: 7 });
      const y = tf.div(tf.randomNormal([n, h, wide, c], 0, 1, 'float32', 7), Math.sqrt(h * wide));
      const jty = tf.reshape(tf.matMul(tf.reshape(y, [n, -1]), k, false, true), [n, layers, dim]);
      const expected = tf.sqrt(tf.mean(tf.sum(tf.square(jty), 2), 1)).dataSync();
      terms.lengths.dataSync().forEach((l, i) => close(l, expected[i]!));
      const batchMean = (expected[0]! + expected[1]!) / 2;
      const moved = 0.5 + 0.1 * (batchMean - 0.5);
      close(value(terms.penalty), ((expected[0]! - moved) ** 2 + (expected[1]! - moved) ** 2) / 2);
    });
  });

  it('documents the second-order gaps of tfjs-core (if one is filled upstream, update losses.ts and the README)', () => {
    assert.deepEqual(registerHigherOrderGradients(), [], 'comparisons already registered on import');
    for (const kernel of ['Greater', 'GreaterEqual', 'Less', 'LessEqual', 'Equal', 'NotEqual']) {
      assert.ok(tf.getGradient(kernel), kernel);
    }
    const missing = [
      'DepthwiseConv2dNativeBackpropInput',
      'DepthwiseConv2dNativeBackpropFilter',
      'AvgPoolGrad',
      'MaxPoolGrad',
      'ResizeNearestNeighborGrad',
      'ResizeBilinearGrad',
      'Conv2DBackpropFilter',
    ];
    assert.deepEqual(
      missing.filter((kernel) => tf.getGradient(kernel) !== undefined),
      [],
    );
    assert.ok(tf.getGradient('Conv2DBackpropInput'), 'conv2d is differentiable twice');
  });
});

describe('R1 and WGAN-GP gradients of gradients: wasm equals cpu on a tiny conv D', () => {
  /** d(penalty)/dθ of the tiny DCGAN's D (equalized convs, lrelu, average pooling, minibatch stddev, dense). */
  async function penaltyGradients(backend: 'wasm' | 'cpu'): Promise<Record<string, Float32Array>> {
    await selectBackend({ prefer: backend, allowCpuTraining: true, logger: () => {} });
    const d = buildTinyDcganDiscriminator({ resolution: 8, latentDim: 4, width: 4 }, 3);
    try {
      return tf.tidy(() => {
        const reals = tf.randomNormal([4, 8, 8, 5], 0, 1, 'float32', 5) as tf.Tensor4D;
        const fakes = tf.randomNormal([4, 8, 8, 5], 0, 1, 'float32', 6) as tf.Tensor4D;
        const score = (x: tf.Tensor4D) => d.score(x, true);
        const variables = Object.values(d.variables);
        const r1 = tf.variableGrads(() => r1Penalty(score, reals, { gamma: 10, interval: 16 }), variables);
        const gp = tf.variableGrads(
          () =>
            wganGpDiscriminatorLoss(score, reals, fakes, { alpha: tf.tensor1d([0.1, 0.4, 0.7, 0.9]) }).loss,
          variables,
        );
        const out: Record<string, Float32Array> = { r1: r1.value.dataSync() as Float32Array };
        // A variable R1 does not depend on (D's last bias) has no gradient: it must be missing on both backends.
        for (const [name, variable] of Object.entries(d.variables)) {
          for (const [key, grads] of [
            ['r1', r1.grads],
            ['gp', gp.grads],
          ] as const) {
            const gradient = grads[variable.name];
            out[`${key}:${name}`] = gradient ? (gradient.dataSync() as Float32Array) : new Float32Array(0);
          }
        }
        return out;
      });
    } finally {
      d.dispose();
    }
  }

  it('agree to 1e-4 relative for every variable', async () => {
    const cpu = await penaltyGradients('cpu');
    const wasm = await penaltyGradients('wasm');
    assert.ok(cpu.r1![0]! > 0);
    let compared = 0;
    for (const [key, expected] of Object.entries(cpu)) {
      const actual = wasm[key]!;
      assert.equal(actual.length, expected.length, key);
      if (expected.length === 0) continue;
      const scale = Math.max(...Array.from(expected, Math.abs));
      const error = Math.max(...Array.from(expected, (v, i) => Math.abs(v - actual[i]!)));
      assert.ok(error <= 1e-4 * Math.max(scale, 1e-3), `${key}: max error ${error} vs scale ${scale}`);
      if (scale > 0) compared += 1;
    }
    assert.ok(compared >= 10, `only ${compared} non-zero gradients compared`);
  });
});
