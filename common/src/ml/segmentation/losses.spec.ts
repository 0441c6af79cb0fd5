import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import {
  crossEntropyFromLogits,
  deepSupervisionWeights,
  diceCrossEntropyLoss,
  downsampleLabels,
  oneHotLabels,
  segmentationLoss,
  softDiceLoss,
} from './losses.js';
import { phantomBatch, useWasm } from './segmentation-spec-helpers.js';

const value = (t: tf.Tensor): number => t.dataSync()[0]!;

describe('segmentation losses', () => {
  before(useWasm);

  it('one-hot encodes int32 and integer-valued float class maps alike', () => {
    tf.tidy(() => {
      const expected = [
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
      ];
      const asInt = oneHotLabels(tf.tensor3d([0, 1, 2, 3], [1, 2, 2], 'int32'));
      assert.equal(asInt.dtype, 'float32');
      assert.deepEqual(asInt.reshape([4, 4]).arraySync(), expected);
      assert.deepEqual(
        oneHotLabels(tf.tensor3d([0, 1, 2, 3], [1, 2, 2]))
          .reshape([4, 4])
          .arraySync(),
        expected,
      );
    });
  });

  it('scores a perfect one-hot prediction with soft Dice ≈ 0, and a wrong one with ≈ 1', () => {
    tf.tidy(() => {
      const { labels } = phantomBatch(2, 2, 16);
      const oneHot = oneHotLabels(labels);
      assert.ok(value(softDiceLoss(oneHot, oneHot)) < 1e-6);
      assert.ok(value(softDiceLoss(oneHot, oneHot, { includeBackground: true, batchDice: false })) < 1e-6);
      // Every pixel predicted as background: the foreground Dice is 0 for each class present.
      const allBackground = oneHotLabels(tf.zerosLike(labels));
      assert.ok(value(softDiceLoss(allBackground, oneHot)) > 1 - 1e-6);
    });
  });

  it('computes the nnU-Net batch Dice by hand', () => {
    tf.tidy(() => {
      // One 1×2 image; classes 0..3. Pixel 0 is class 1, pixel 1 class 2. p(class 1) = 0.5, 0.25.
      const labels = tf.tensor3d([1, 2], [1, 1, 2], 'int32');
      const p = tf.tensor4d([0.25, 0.5, 0.25, 0, 0.25, 0.25, 0.5, 0], [1, 1, 2, 4]);
      const smooth = 1e-5;
      const dice1 = (2 * 0.5 + smooth) / (0.75 + 1 + smooth);
      const dice2 = (2 * 0.5 + smooth) / (0.75 + 1 + smooth);
      const dice3 = smooth / (0 + 0 + smooth);
      const expected = 1 - (dice1 + dice2 + dice3) / 3;
      assert.ok(Math.abs(value(softDiceLoss(p, oneHotLabels(labels))) - expected) < 1e-6);
    });
  });

  it('gives cross-entropy ln 4 for uniform logits, falling as the right class grows more confident', () => {
    tf.tidy(() => {
      const oneHot = oneHotLabels(tf.tensor3d([2, 0], [1, 1, 2], 'int32'));
      assert.ok(Math.abs(value(crossEntropyFromLogits(tf.zeros([1, 1, 2, 4]), oneHot)) - Math.log(4)) < 1e-6);
      let previous = Infinity;
      for (const confidence of [0, 1, 2, 4, 8, 12]) {
        const logits = tf.mul(oneHot, confidence) as tf.Tensor4D;
        const ce = value(crossEntropyFromLogits(logits, oneHot));
        assert.ok(ce < previous, `CE ${ce} at confidence ${confidence}`);
        previous = ce;
      }
      assert.ok(previous < 1e-3);
      // Dice + CE is the weighted sum of both parts.
      const logits = tf.mul(oneHot, 2) as tf.Tensor4D;
      const both = value(diceCrossEntropyLoss(logits, oneHot, { diceWeight: 0.5, crossEntropyWeight: 2 }));
      const parts =
        2 * value(crossEntropyFromLogits(logits, oneHot)) +
        0.5 * value(softDiceLoss(tf.softmax(logits) as tf.Tensor4D, oneHot));
      assert.ok(Math.abs(both - parts) < 1e-5);
    });
  });

  it('weights deep supervision 1, 1/2, 1/4, ... normalised', () => {
    assert.deepEqual(deepSupervisionWeights(1), [1]);
    const weights = deepSupervisionWeights(4);
    [8 / 15, 4 / 15, 2 / 15, 1 / 15].forEach((w, i) => assert.ok(Math.abs(weights[i]! - w) < 1e-12));
    assert.throws(() => deepSupervisionWeights(0));
  });

  it("downsamples labels nearest-exact (PyTorch's, as nnU-Net v2)", () => {
    tf.tidy(() => {
      const labels = tf.reshape(tf.range(0, 64, 1, 'int32'), [1, 8, 8]) as tf.Tensor3D;
      // factor 2 takes rows/cols 1, 3, 5, 7; factor 4 takes 2, 6.
      assert.deepEqual(downsampleLabels(labels, 2).arraySync(), [
        [
          [9, 11, 13, 15],
          [25, 27, 29, 31],
          [41, 43, 45, 47],
          [57, 59, 61, 63],
        ],
      ]);
      assert.deepEqual(downsampleLabels(labels, 4).arraySync(), [
        [
          [18, 22],
          [50, 54],
        ],
      ]);
    });
  });

  it('sums deep-supervision terms against downsampled labels with the nnU-Net weights', () => {
    tf.tidy(() => {
      const { labels } = phantomBatch(3, 2, 16);
      const full = tf.randomNormal([2, 16, 16, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
      const half = tf.randomNormal([2, 8, 8, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
      const quarter = tf.randomNormal([2, 4, 4, 4], 0, 1, 'float32', 3) as tf.Tensor4D;
      const total = value(segmentationLoss([full, half, quarter], labels));
      const [w0, w1, w2] = deepSupervisionWeights(3);
      const manual =
        w0! * value(diceCrossEntropyLoss(full, oneHotLabels(labels))) +
        w1! * value(diceCrossEntropyLoss(half, oneHotLabels(downsampleLabels(labels, 2)))) +
        w2! * value(diceCrossEntropyLoss(quarter, oneHotLabels(downsampleLabels(labels, 4))));
      assert.ok(Math.abs(total - manual) < 1e-5);
      assert.throws(
        () => segmentationLoss([tf.zeros([2, 6, 6, 4]) as tf.Tensor4D], labels),
        /integer fraction/,
      );
    });
  });
});
