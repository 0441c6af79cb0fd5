// The replacement Tile gradient against tfjs-core's own (slow) one.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { assertClose, prepareBackends, runOn } from './kernel-test-utils.js';
import { registerTrainingGradients, unregisterTrainingGradients } from './training-gradients.js';

const TILE_CASES: Array<{ shape: number[]; reps: number[] }> = [
  { shape: [5], reps: [3] },
  { shape: [2, 3], reps: [3, 2] },
  { shape: [2, 3, 4], reps: [1, 4, 1] },
  { shape: [1, 1, 1, 6], reps: [2, 5, 4, 1] },
  { shape: [2, 3, 2, 2], reps: [2, 1, 3, 2] },
  { shape: [3, 2], reps: [1, 1] },
];

describe('training gradients', () => {
  before(prepareBackends);

  for (const { shape, reps } of TILE_CASES) {
    it(`Tile gradient for ${shape.join('x')} tiled ${reps.join('x')} equals tfjs-core's`, async () => {
      const outShape = shape.map((d, i) => d * (reps[i] ?? 1));
      const inputs = { x: { shape, seed: 1 }, weights: { shape: outShape, seed: 2 } };
      const compute = ({ x, weights }: Record<string, tf.Tensor>) =>
        tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.tile(t, reps), weights as tf.Tensor)))(x as tf.Tensor);
      registerTrainingGradients();
      const ours = await runOn('wasm', inputs, compute);
      unregisterTrainingGradients();
      const core = await runOn('cpu', inputs, compute);
      registerTrainingGradients();
      assertClose(ours, core, `tile ${reps}`);
    });
  }

  // R1 and WGAN-GP differentiate gradients again: through a Tile on a rank-4 map the second derivative used to
  // reach rank-8 binary ops, which XNNPACK (wasm) computes wrongly without an error.
  it('the second derivative through a rank-4 Tile matches cpu on wasm', async () => {
    const shape = [2, 3, 4, 5];
    const reps = [2, 1, 3, 2];
    const outShape = shape.map((d, i) => d * reps[i]!);
    const inputs = { x: { shape, seed: 4 }, weights: { shape: outShape, seed: 5 } };
    const compute = ({ x, weights }: Record<string, tf.Tensor>) => {
      const inner = (t: tf.Tensor) =>
        tf.sum(tf.square(tf.mul(tf.tile(tf.square(t), reps), weights as tf.Tensor)));
      // d/dx of |d inner/dx|²: the gradient of a gradient, as in a gradient penalty
      return tf.grad((t: tf.Tensor) => tf.sum(tf.square(tf.grad(inner)(t))))(x as tf.Tensor);
    };
    registerTrainingGradients();
    const ours = await runOn('wasm', inputs, compute);
    const reference = await runOn('cpu', inputs, compute);
    assertClose(ours, reference, 'second derivative through tile');
  });

  it('registers idempotently and puts the core gradient back', () => {
    const core = tf.getGradient('Tile');
    unregisterTrainingGradients();
    const original = tf.getGradient('Tile');
    registerTrainingGradients();
    const ours = tf.getGradient('Tile');
    assert.notEqual(ours, original);
    registerTrainingGradients();
    assert.equal(tf.getGradient('Tile'), ours);
    unregisterTrainingGradients();
    assert.equal(tf.getGradient('Tile'), original);
    registerTrainingGradients();
    assert.ok(core);
  });

  it('makes layer normalisation from tf.layers train without thousands of slices', async () => {
    await tf.setBackend('wasm');
    const layer = tf.layers.layerNormalization();
    const x = tf.randomNormal([2, 8, 8, 16], 0, 1, 'float32', 3);
    layer.apply(x);
    let sliceCalls = 0;
    const slice = tf.getKernel('Slice', 'wasm');
    assert.ok(slice);
    tf.unregisterKernel('Slice', 'wasm');
    tf.registerKernel({ ...slice, kernelFunc: (args) => (sliceCalls++, slice.kernelFunc(args)) });
    try {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(layer.apply(x) as tf.Tensor)));
      tf.dispose([value, grads]);
    } finally {
      tf.unregisterKernel('Slice', 'wasm');
      tf.registerKernel(slice);
      tf.dispose([x]);
      layer.dispose();
    }
    // Core's gradient would slice once per tiled copy: 2 x 8 x 8 for gamma and again for beta.
    assert.ok(sliceCalls < 10, `${sliceCalls} Slice calls`);
  });
});
