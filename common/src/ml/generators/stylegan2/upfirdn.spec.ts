import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { upfirdn2d as sharedUpfirdn2d } from '../gan/layers.js';
import {
  maxAbsDiff,
  randomArray,
  upfirdn2dReference,
  upfirdnReference,
  useWasm,
} from './stylegan-spec-helpers.js';
import {
  BINOMIAL_FILTER,
  FirFilterCache,
  downsample2d,
  paddedDepthwiseTaps,
  upfirdn1d,
  upfirdn2d,
  upsample2d,
  type FirImpl,
} from './upfirdn.js';

const ASYMMETRIC = [0.1, 0.5, -0.2, 0.3, 0.05];

describe('upfirdn (StyleGAN resampling)', () => {
  before(useWasm);

  it('matches the direct definition along one axis for up, down, padding and cropping, in both impls', () => {
    const x = Array.from(randomArray('u1', 21));
    const cases: [number, number, number, number, readonly number[]][] = [
      [1, 1, 2, 2, BINOMIAL_FILTER],
      [2, 1, 2, 1, BINOMIAL_FILTER],
      [1, 2, 1, 1, BINOMIAL_FILTER],
      [2, 1, 5, 4, ASYMMETRIC],
      [1, 2, 3, 0, ASYMMETRIC],
      [4, 1, 13, 11, Array.from(randomArray('f24', 24))],
      [1, 2, -3, -2, Array.from(randomArray('f12', 12))],
      [2, 1, -4, 3, Array.from(randomArray('f12b', 12))],
      [1, 1, -1, -1, [1]],
      [2, 1, 0, -1, [1]],
    ];
    for (const impl of ['slices', 'depthwise'] as FirImpl[]) {
      for (const [up, down, pad0, pad1, f] of cases) {
        const expected = upfirdnReference(x, f, up, down, pad0, pad1);
        const got = tf.tidy(() =>
          upfirdn1d(tf.tensor4d(x, [1, x.length, 1, 1]), 1, f, { up, down, pad0, pad1, impl }).dataSync(),
        );
        assert.equal(got.length, expected.length, `${impl} up ${up} down ${down} pad ${pad0}/${pad1}`);
        assert.ok(maxAbsDiff(got, expected) < 1e-5, `${impl} up ${up} down ${down} pad ${pad0}/${pad1}`);
      }
    }
  });

  it('runs separably over H and W of NHWC tensors like the direct 2-D computation', () => {
    const shape: [number, number, number, number] = [2, 7, 9, 3];
    const data = randomArray('u2', 2 * 7 * 9 * 3);
    for (const [up, down, padding] of [
      [2, 1, [2, 1, 3, 0]],
      [1, 2, [1, 1, 2, 1]],
    ] as const) {
      const expected = upfirdn2dReference(data, shape, ASYMMETRIC, up, down, padding);
      for (const impl of ['slices', 'depthwise'] as FirImpl[]) {
        const cache = new FirFilterCache();
        for (const filterCache of [undefined, cache, cache]) {
          const got = tf.tidy(() =>
            upfirdn2d(tf.tensor4d(data, shape), ASYMMETRIC, { up, down, padding, impl, filterCache }),
          );
          assert.deepEqual(got.shape, expected.shape);
          assert.ok(maxAbsDiff(got.dataSync(), expected.data) < 1e-5, `${impl} up ${up} down ${down}`);
          got.dispose();
        }
        // Cached filters survive the tidy and go with the cache.
        const cached = cache.size;
        assert.equal(cached > 0, impl === 'depthwise');
        const tensors = tf.memory().numTensors;
        cache.dispose();
        assert.equal(tf.memory().numTensors, tensors - cached);
      }
    }
  });

  it('pads depthwise filters to the tap counts XNNPACK runs fast (3, 4, 9, 25)', () => {
    assert.deepEqual([2, 3, 4, 5, 6, 9, 12, 25, 30].map(paddedDepthwiseTaps), [3, 3, 4, 9, 9, 9, 25, 25, 30]);
  });

  it('upsample2d / downsample2d halve and double the side and agree with the shared gan/ upfirdn2d', () => {
    const x = tf.tensor4d(randomArray('u3', 2 * 8 * 8 * 3), [2, 8, 8, 3]);
    tf.tidy(() => {
      const up = upsample2d(x);
      const down = downsample2d(x);
      assert.deepEqual(up.shape, [2, 16, 16, 3]);
      assert.deepEqual(down.shape, [2, 4, 4, 3]);
      const sharedUp = sharedUpfirdn2d(x, [1, 3, 3, 1], { up: 2, padding: [2, 1], gain: 4 });
      const sharedDown = sharedUpfirdn2d(x, [1, 3, 3, 1], { down: 2, padding: [1, 1] });
      assert.ok(maxAbsDiff(up.dataSync(), sharedUp.dataSync()) < 1e-5);
      assert.ok(maxAbsDiff(down.dataSync(), sharedDown.dataSync()) < 1e-5);
      // A constant image stays constant away from the borders (gain 4 for ×2 upsampling, 1 for ×½).
      const ones = upsample2d(tf.ones([1, 8, 8, 1]) as tf.Tensor4D).dataSync();
      assert.ok(Math.abs(ones[8 * 16 + 8]! - 1) < 1e-6);
    });
    x.dispose();
  });

  it("'slices' is differentiable twice (a gradient of a gradient), with no tensors left behind", () => {
    const x = tf.variable(tf.tensor4d(randomArray('u4', 1 * 6 * 6 * 2), [1, 6, 6, 2]));
    const before = tf.memory().numTensors;
    const secondOrder = tf.tidy(() => {
      const gradOfNorm = tf.grad((v: tf.Tensor) => {
        const g = tf.grad((u: tf.Tensor) => tf.sum(tf.square(upsample2d(downsample2d(u as tf.Tensor4D)))))(v);
        return tf.sum(tf.square(g));
      });
      return gradOfNorm(x).dataSync();
    });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(secondOrder.some((v) => v !== 0));
    assert.ok(secondOrder.every(Number.isFinite));
    x.dispose();
  });
});
