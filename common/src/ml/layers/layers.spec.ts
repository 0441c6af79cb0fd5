import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../util/rng.js';
import { selectBackend } from '../backend/index.js';
import {
  conv2d,
  conv2dTranspose,
  createConv2d,
  createConv2dTranspose,
  createDense,
  createGroupNorm,
  createNorm,
  dense,
  gelu,
  groupNorm,
  instanceNorm,
  layerNorm,
  leakyRelu,
  resizeBilinear,
} from './ops.js';
import { HE, ParamFactory, countParameters, disposeVariables, initialValues } from './params.js';

function std(values: Float32Array): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
}

describe('ParamFactory', () => {
  before(() => selectBackend({ prefer: 'wasm' }));

  it('names variables by scope and keeps them in one record', () => {
    const params = ParamFactory.create(1, 'test');
    after(() => disposeVariables(params.variables));
    params.scope('enc1').scope('conv1').variable('kernel', [3, 3, 2, 4], HE);
    params.scope('head').variable('bias', [4], { kind: 'zeros' });
    assert.deepEqual(Object.keys(params.variables), ['enc1/conv1/kernel', 'head/bias']);
    assert.match(params.variables['enc1/conv1/kernel']!.name, /^test#\d+\/enc1\/conv1\/kernel$/);
    assert.equal(countParameters(params.variables), 3 * 3 * 2 * 4 + 4);
    assert.throws(() => params.scope('head').variable('bias', [4], HE), /created twice/);
    assert.throws(() => params.scope('a/b'), /not a valid name/);
  });

  it('draws values from (seed, name) only: same in any creation order, new ones for a new seed', () => {
    const a = ParamFactory.create(5);
    const b = ParamFactory.create(5);
    const c = ParamFactory.create(6);
    after(() => [a, b, c].forEach((p) => disposeVariables(p.variables)));
    a.scope('x').variable('kernel', [8, 8], HE);
    a.scope('y').variable('kernel', [8, 8], HE);
    b.scope('y').variable('kernel', [8, 8], HE);
    b.scope('x').variable('kernel', [8, 8], HE);
    c.scope('x').variable('kernel', [8, 8], HE);
    const values = (p: ParamFactory, name: string) => p.variables[name]!.dataSync();
    assert.deepEqual(values(a, 'x/kernel'), values(b, 'x/kernel'));
    assert.deepEqual(values(a, 'y/kernel'), values(b, 'y/kernel'));
    assert.notDeepEqual(values(a, 'x/kernel'), values(a, 'y/kernel'));
    assert.notDeepEqual(values(a, 'x/kernel'), values(c, 'x/kernel'));
  });

  it('initialises with the documented scales', () => {
    const rng = () => createRng('init');
    // He for a 3×3×64 -> 64 conv with LeakyReLU(0.01): std = sqrt(2 / 1.0001) / sqrt(576).
    const he = initialValues({ kind: 'he', negativeSlope: 0.01 }, [3, 3, 64, 64], rng());
    assert.ok(Math.abs(std(he) / (Math.sqrt(2 / 1.0001) / 24) - 1) < 0.03);
    const glorot = initialValues({ kind: 'glorot' }, [100, 300], rng());
    const limit = Math.sqrt(6 / 400);
    assert.ok(glorot.every((v) => Math.abs(v) <= limit));
    assert.ok(Math.abs(std(glorot) / (limit / Math.sqrt(3)) - 1) < 0.03);
    const truncated = initialValues({ kind: 'normal', std: 0.02, truncated: true }, [10000], rng());
    assert.ok(truncated.every((v) => Math.abs(v) <= 0.04));
    assert.ok(initialValues({ kind: 'ones' }, [3], rng()).every((v) => v === 1));
    assert.ok(initialValues({ kind: 'zeros' }, [3], rng()).every((v) => v === 0));
  });
});

describe('layer ops', () => {
  let params: ParamFactory;
  before(async () => {
    await selectBackend({ prefer: 'wasm' });
    params = ParamFactory.create(3);
  });
  after(() => disposeVariables(params.variables));

  it('convolves with stride, padding and optional bias', () => {
    const strided = createConv2d(params.scope('strided'), {
      inChannels: 3,
      outChannels: 5,
      kernelSize: 3,
      strides: 2,
    });
    const valid = createConv2d(params.scope('valid'), {
      inChannels: 3,
      outChannels: 2,
      kernelSize: 3,
      padding: 'valid',
      bias: false,
    });
    assert.equal(valid.bias, undefined);
    tf.tidy(() => {
      const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      assert.deepEqual(conv2d(x, strided).shape, [2, 4, 4, 5]);
      assert.deepEqual(conv2d(x, valid).shape, [2, 6, 6, 2]);
      strided.bias!.assign(tf.fill([5], 0.5));
      const withBias = conv2d(x, strided);
      const manual = tf.add(tf.conv2d(x, strided.kernel as tf.Tensor4D, 2, 'same'), 0.5);
      assert.ok(tf.max(tf.abs(tf.sub(withBias, manual))).dataSync()[0]! < 1e-5);
    });
  });

  it('upsamples with a transposed convolution whose kernel sits in tf layout [k, k, out, in]', () => {
    const up = createConv2dTranspose(params.scope('up'), {
      inChannels: 4,
      outChannels: 3,
      kernelSize: 2,
      strides: 2,
    });
    assert.deepEqual(up.kernel.shape, [2, 2, 3, 4]);
    tf.tidy(() => {
      const x = tf.randomNormal([2, 5, 6, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
      const y = conv2dTranspose(x, up);
      assert.deepEqual(y.shape, [2, 10, 12, 3]);
      // kernel 2 = stride 2: output (2i + a, 2j + b) = x[i, j] · K[a, b] (no overlap).
      // (Einsum has no wasm kernel, so a matmul.)
      const pixel = x.slice([1, 2, 3, 0], [1, 1, 1, 4]).reshape([4, 1]);
      const tap = up.kernel.slice([1, 0, 0, 0], [1, 1, 3, 4]).reshape([3, 4]);
      const expected = tf.matMul(tap, pixel).reshape([3]);
      const actual = y.slice([1, 5, 6, 0], [1, 1, 1, 3]).reshape([3]);
      assert.ok(tf.max(tf.abs(tf.sub(actual, expected))).dataSync()[0]! < 1e-5);
    });
  });

  it('applies dense layers over the last axis of any rank', () => {
    const layer = createDense(params.scope('dense'), { inFeatures: 6, outFeatures: 2 });
    tf.tidy(() => {
      const x = tf.randomNormal([3, 4, 6], 0, 1, 'float32', 3);
      const y = dense(x, layer);
      assert.deepEqual(y.shape, [3, 4, 2]);
      const manual = tf.add(tf.matMul(x.reshape([12, 6]), layer.kernel), layer.bias!).reshape([3, 4, 2]);
      assert.ok(tf.max(tf.abs(tf.sub(y, manual))).dataSync()[0]! < 1e-5);
    });
  });

  it('normalises per instance, per token and per group', () => {
    const norm = createNorm(params.scope('in'), { channels: 4 });
    const group = createGroupNorm(params.scope('gn'), { channels: 4, groups: 2 });
    const perChannel = createGroupNorm(params.scope('gn4'), { channels: 4, groups: 4 });
    assert.throws(() => createGroupNorm(params.scope('bad'), { channels: 4, groups: 3 }), /groups/);
    tf.tidy(() => {
      const x = tf.add(tf.mul(tf.randomNormal([2, 6, 5, 4], 0, 1, 'float32', 4), 3), 7) as tf.Tensor4D;
      const inst = tf.moments(instanceNorm(x, norm), [1, 2]);
      assert.ok(tf.max(tf.abs(inst.mean)).dataSync()[0]! < 1e-4);
      assert.ok(tf.max(tf.abs(tf.sub(inst.variance, 1))).dataSync()[0]! < 1e-3);
      const tokens = tf.moments(layerNorm(x, norm), [3]);
      assert.ok(tf.max(tf.abs(tokens.mean)).dataSync()[0]! < 1e-4);
      const grouped = tf.moments(groupNorm(x, group).reshape([2, 6, 5, 2, 2]), [1, 2, 4]);
      assert.ok(tf.max(tf.abs(tf.sub(grouped.variance, 1))).dataSync()[0]! < 1e-3);
      // One channel per group is instance norm.
      assert.ok(
        tf.max(tf.abs(tf.sub(groupNorm(x, perChannel), instanceNorm(x, norm)))).dataSync()[0]! < 1e-4,
      );
      // The affine parameters scale and shift.
      norm.gamma!.assign(tf.fill([4], 2));
      norm.beta!.assign(tf.fill([4], 1));
      const scaled = tf.moments(instanceNorm(x, norm), [1, 2]);
      assert.ok(tf.max(tf.abs(tf.sub(scaled.mean, 1))).dataSync()[0]! < 1e-4);
      assert.ok(tf.max(tf.abs(tf.sub(scaled.variance, 4))).dataSync()[0]! < 1e-2);
    });
  });

  it('computes exact GELU, LeakyReLU and half-pixel bilinear resizing', () => {
    tf.tidy(() => {
      const x = tf.tensor1d([-2, -1, 0, 1, 2]);
      // x·Φ(x): Φ(1) = 0.841344746, Φ(2) = 0.977249868
      const expected = [-2 * (1 - 0.977249868), -(1 - 0.841344746), 0, 0.841344746, 2 * 0.977249868];
      gelu(x)
        .arraySync()
        .forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-6));
      assert.deepEqual(
        leakyRelu(x, 0.01)
          .arraySync()
          .map((v) => Math.round(v * 1000) / 1000),
        [-0.02, -0.01, 0, 1, 2],
      );
      const image = tf.tensor4d([0, 1], [1, 1, 2, 1]);
      // PyTorch align_corners=False: [0, 1] -> [0, 0.25, 0.75, 1].
      assert.deepEqual(resizeBilinear(image, [1, 4]).dataSync(), new Float32Array([0, 0.25, 0.75, 1]));
    });
  });
});
