// The XNNPACK-backed channel sums and the bias addition with a hand-written gradient, against
// tf.sum/autodiff.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { addChannelBias, channelSums, totalChannelSums } from './fast-ops.js';
import { randomImages, useWasm } from './ddpm-spec-helpers.js';

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

describe('fast channel ops', () => {
  before(useWasm);

  it('sum over H, W per sample and over N, H, W per channel, at several shapes', () => {
    tf.tidy(() => {
      for (const shape of [
        [2, 8, 8, 3],
        [3, 5, 7, 4],
        [1, 1, 1, 6],
        [4, 32, 32, 16],
      ] as const) {
        const x = randomImages(shape.join('x'), shape[0], shape[1], shape[3]);
        const y =
          shape[1] === shape[2] ? x : (tf.randomNormal([...shape], 0, 1, 'float32', 5) as tf.Tensor4D);
        assert.deepEqual(channelSums(y).shape, [shape[0], shape[3]]);
        assert.ok(maxDiff(channelSums(y), tf.sum(y, [1, 2])) < 1e-4, `channelSums ${shape}`);
        assert.ok(maxDiff(totalChannelSums(y), tf.sum(y, [0, 1, 2])) < 1e-3, `totalChannelSums ${shape}`);
      }
    });
  });

  it('adds a channel bias (and a per-sample term) with the gradients of the plain broadcast add', () => {
    tf.tidy(() => {
      const x = randomImages('bias-x', 3, 6, 4);
      const weights = randomImages('bias-w', 3, 6, 4);
      const bias = tf.tensor1d([0.1, -0.2, 0.3, 0.5]);
      const perSample = tf.randomNormal([3, 4], 0, 1, 'float32', 3) as tf.Tensor2D;
      const reference = (a: tf.Tensor, b: tf.Tensor, e: tf.Tensor) =>
        tf.sum(tf.mul(tf.add(tf.add(a, b), tf.reshape(e, [3, 1, 1, 4])), weights));
      const fast = (a: tf.Tensor, b: tf.Tensor, e: tf.Tensor) =>
        tf.sum(tf.mul(addChannelBias(a as tf.Tensor4D, b as tf.Tensor1D, e as tf.Tensor2D), weights));
      assert.ok(maxDiff(fast(x, bias, perSample), reference(x, bias, perSample)) < 1e-4);
      const expected = tf.grads(reference)([x, bias, perSample]);
      tf.grads(fast)([x, bias, perSample]).forEach((grad, i) =>
        assert.ok(maxDiff(grad, expected[i]!) < 1e-4, `gradient ${i}`),
      );
      const plain = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(addChannelBias(a as tf.Tensor4D, b as tf.Tensor1D), weights)),
      )([x, bias]);
      assert.ok(maxDiff(plain[0]!, weights) < 1e-6);
      assert.ok(maxDiff(plain[1]!, tf.sum(weights, [0, 1, 2])) < 1e-4);
    });
  });
});
