import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../util/rng.js';
import { selectBackend } from '../backend/index.js';
import {
  NNUNET_AUGMENTATION,
  affineRow,
  applyAugmentation,
  augmentBatch,
  gaussianTaps,
  mirrorLeftRight,
  planAugmentation,
  type AugmentOptions,
} from './augment.js';

/** A batch with structure and every label: images in [-1, 1], labels 0..3 in blocks. */
function batch(n = 4, size = 32): { images: tf.Tensor4D; labels: tf.Tensor3D } {
  return tf.tidy(() => {
    const images = tf.tanh(tf.randomNormal([n, size, size, 4], 0, 1, 'float32', 9)) as tf.Tensor4D;
    const rows = tf.floorDiv(tf.range(0, size, 1, 'int32'), size / 4);
    const cols = tf.floorDiv(tf.range(0, size, 1, 'int32'), size / 2);
    const pattern = tf.mod(tf.add(rows.reshape([size, 1]), cols.reshape([1, size])), 4);
    return { images, labels: tf.cast(tf.tile(pattern.expandDims(0), [n, 1, 1]), 'int32') as tf.Tensor3D };
  });
}

const EVERYTHING: AugmentOptions = {
  rotation: { probability: 1, maxDegrees: 180 },
  scaling: { probability: 1, range: [0.7, 1.4] },
  noise: { probability: 1, varianceRange: [0, 0.1] },
  blur: { probability: 1, sigmaRange: [0.5, 1] },
  gamma: { probability: 1, range: [0.7, 1.5], invertProbability: 0.5 },
  mirror: { probability: 0.5 },
};

const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor): number =>
  tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

describe('augmentation', () => {
  before(() => selectBackend({ prefer: 'wasm' }));

  it('keeps labels in {0, 1, 2, 3} under every transform, as int32', () => {
    const { images, labels } = batch();
    const rng = createRng(1);
    for (const options of [EVERYTHING, NNUNET_AUGMENTATION]) {
      for (let round = 0; round < 3; round++) {
        const out = augmentBatch(images, labels, rng, options);
        assert.equal(out.labels.dtype, 'int32');
        assert.deepEqual(out.labels.shape, labels.shape);
        assert.deepEqual(out.images.shape, images.shape);
        const values = new Set(out.labels.dataSync());
        assert.ok(
          [...values].every((v) => v === 0 || v === 1 || v === 2 || v === 3),
          `labels ${[...values]}`,
        );
        assert.ok(out.images.isFinite().all().dataSync()[0]);
        tf.dispose([out.images, out.labels]);
      }
    }
    tf.dispose([images, labels]);
  });

  it('leaves the batch unchanged with no transform enabled, and returns tensors the caller owns', () => {
    const { images, labels } = batch();
    const out = augmentBatch(images, labels, createRng(2), {});
    assert.notEqual(out.images, images);
    assert.deepEqual(out.images.dataSync(), images.dataSync());
    assert.deepEqual(out.labels.dataSync(), labels.dataSync());
    const off = augmentBatch(images, labels, createRng(2), {
      ...EVERYTHING,
      rotation: { probability: 0, maxDegrees: 180 },
      scaling: { probability: 0, range: [0.5, 2] },
      noise: { probability: 0, varianceRange: [0, 1] },
      blur: { probability: 0, sigmaRange: [1, 2] },
      gamma: { probability: 0, range: [0.5, 2] },
      mirror: { probability: 0 },
    });
    assert.deepEqual(off.images.dataSync(), images.dataSync());
    assert.deepEqual(off.labels.dataSync(), labels.dataSync());
    tf.dispose([images, labels, out.images, out.labels, off.images, off.labels]);
  });

  it('is the identity within 1e-5 for rotation 0 and scale 1', () => {
    const { images, labels } = batch();
    const plan = planAugmentation(createRng(3), 4, 4, {});
    for (const sample of plan.samples) {
      sample.rotation = 1e-12; // forces the affine path; cos = 1, sin ≈ 0
      sample.scale = 1;
    }
    assert.deepEqual(affineRow(0, 1, 32, 32), [1, 0, 0, -0, 1, 0, 0, 0]);
    const out = applyAugmentation(images, labels, plan);
    assert.ok(maxAbsDiff(out.images, images) < 1e-5);
    assert.deepEqual(out.labels.dataSync(), labels.dataSync());
    // Through the options: always rotate by ±0°, always scale by 1.
    const viaOptions = augmentBatch(images, labels, createRng(3), {
      rotation: { probability: 1, maxDegrees: 0 },
      scaling: { probability: 1, range: [1, 1] },
    });
    assert.ok(maxAbsDiff(viaOptions.images, images) < 1e-5);
    assert.deepEqual(viaOptions.labels.dataSync(), labels.dataSync());
    tf.dispose([images, labels, out.images, out.labels, viaOptions.images, viaOptions.labels]);
  });

  it('rotates images and labels together by the same affine', () => {
    tf.tidy(() => {
      // A quarter turn of a 4×4 map moves (y, x) to (x, 3 - y) for the content (rotation +90° as planned
      // here).
      const labels = tf.tensor3d(
        [...Array(16).keys()].map((i) => i % 4),
        [1, 4, 4],
        'int32',
      );
      const images = tf.cast(tf.expandDims(labels, 3), 'float32') as tf.Tensor4D;
      const plan = planAugmentation(createRng(4), 1, 1, {});
      plan.samples[0]!.rotation = Math.PI / 2;
      const out = applyAugmentation(images, labels, plan);
      assert.deepEqual(
        out.labels.reshape([16]).arraySync(),
        tf.cast(out.images, 'int32').reshape([16]).arraySync(),
      );
      // The column index became the row index: every row is now constant.
      const rowsOut = out.labels.arraySync()[0]!;
      for (const row of rowsOut) assert.equal(new Set(row).size, 1);
    });
  });

  it('mirrors along the width axis, and twice is the identity', () => {
    const { images, labels } = batch(2, 8);
    const once = mirrorLeftRight(images, labels);
    assert.deepEqual(once.labels.arraySync()[0]![0], [...labels.arraySync()[0]![0]!].reverse());
    const twice = mirrorLeftRight(once.images, once.labels);
    assert.deepEqual(twice.images.dataSync(), images.dataSync());
    assert.deepEqual(twice.labels.dataSync(), labels.dataSync());
    // The planned mirror does the same per chosen sample.
    const plan = planAugmentation(createRng(5), 2, 4, {});
    plan.samples[1]!.mirror = true;
    const planned = applyAugmentation(images, labels, plan);
    assert.deepEqual(planned.labels.arraySync()[0], labels.arraySync()[0]);
    assert.deepEqual(planned.labels.arraySync()[1], once.labels.arraySync()[1]);
    tf.dispose([
      images,
      labels,
      once.images,
      once.labels,
      twice.images,
      twice.labels,
      planned.images,
      planned.labels,
    ]);
  });

  it('is deterministic for a seed, differs for another, and keeps transforms independent', () => {
    const plan = (seed: number, options: AugmentOptions) => planAugmentation(createRng(seed), 8, 4, options);
    assert.deepEqual(plan(6, EVERYTHING), plan(6, EVERYTHING));
    assert.notDeepEqual(plan(6, EVERYTHING), plan(7, EVERYTHING));
    const withoutNoise = plan(6, { ...EVERYTHING, noise: undefined });
    assert.deepEqual(
      withoutNoise.samples.map((s) => s.rotation),
      plan(6, EVERYTHING).samples.map((s) => s.rotation),
    );
    const { images, labels } = batch();
    const a = augmentBatch(images, labels, createRng(8), EVERYTHING);
    const b = augmentBatch(images, labels, createRng(8), EVERYTHING);
    assert.deepEqual(a.images.dataSync(), b.images.dataSync());
    assert.deepEqual(a.labels.dataSync(), b.labels.dataSync());
    tf.dispose([images, labels, a.images, a.labels, b.images, b.labels]);
  });

  it('blurs with normalised taps, adds noise of the planned size, keeps gamma within the range', () => {
    const taps = gaussianTaps(1, 4);
    assert.ok(Math.abs(taps.reduce((x, y) => x + y, 0) - 1) < 1e-12);
    assert.deepEqual(gaussianTaps(0, 2), [0, 0, 1, 0, 0]);
    const { images, labels } = batch(2, 32);
    const plan = planAugmentation(createRng(9), 2, 4, {});
    plan.samples[0]!.noiseStd = 0.1;
    const noisy = applyAugmentation(images, labels, plan);
    const residual = tf.tidy(
      () => tf.moments(tf.sub(noisy.images, images).slice([0], [1])).variance.dataSync()[0]!,
    );
    assert.ok(Math.abs(Math.sqrt(residual) - 0.1) < 0.01, `noise std ${Math.sqrt(residual)}`);
    assert.ok(maxAbsDiff(noisy.images.slice([1], [1]), images.slice([1], [1])) === 0);

    const gammaPlan = planAugmentation(createRng(9), 2, 4, {});
    gammaPlan.samples[0]!.gammas = [0.7, 1, 1.5, 1.2];
    gammaPlan.samples[1]!.blurSigmas = [1, 0, 0.5, 0];
    const out = applyAugmentation(images, labels, gammaPlan);
    tf.tidy(() => {
      // Gamma maps each channel's [min, max] onto itself.
      const range = (t: tf.Tensor) => [tf.min(t, [1, 2]).arraySync(), tf.max(t, [1, 2]).arraySync()];
      const [lowIn, highIn] = range(images.slice([0], [1]));
      const [lowOut, highOut] = range(out.images.slice([0], [1]));
      (lowIn as number[][])[0]!.forEach((v, c) =>
        assert.ok(Math.abs(v - (lowOut as number[][])[0]![c]!) < 1e-5),
      );
      (highIn as number[][])[0]!.forEach((v, c) =>
        assert.ok(Math.abs(v - (highOut as number[][])[0]![c]!) < 1e-5),
      );
      // Blurred channels lose variance, unblurred ones are untouched.
      const channel = (t: tf.Tensor, c: number) => t.slice([1, 0, 0, c], [1, -1, -1, 1]);
      assert.ok(
        tf.moments(channel(out.images, 0)).variance.dataSync()[0]! <
          tf.moments(channel(images, 0)).variance.dataSync()[0]!,
      );
      assert.equal(maxAbsDiff(channel(out.images, 1), channel(images, 1)), 0);
    });
    tf.dispose([images, labels, noisy.images, noisy.labels, out.images, out.labels]);
  });

  it('does not leak tensors', () => {
    const { images, labels } = batch();
    const rng = createRng(10);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const out = augmentBatch(images, labels, rng, EVERYTHING);
      tf.dispose([out.images, out.labels]);
    }
    assert.equal(tf.memory().numTensors, before);
    tf.dispose([images, labels]);
  });
});
