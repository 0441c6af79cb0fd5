import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../../backend/index.js';
import { ParamFactory, disposeVariables } from '../../layers/params.js';

import {
  BLACK_FLOOR_SHARPNESS,
  blackFloor,
  createEqualizedConv2d,
  createEqualizedDense,
  downsampleAverage,
  equalizedConv2d,
  equalizedDense,
  firKernel2d,
  leakyReluGain,
  minibatchGroupSize,
  minibatchStddev,
  outputFloor,
  pixelNorm,
  upfirdn2d,
  upsampleNearest,
} from './layers.js';
import { r1Penalty } from './losses.js';

function std(values: ArrayLike<number>): number {
  const list = Array.from(values);
  const mean = list.reduce((a, b) => a + b, 0) / list.length;
  return Math.sqrt(list.reduce((a, b) => a + (b - mean) ** 2, 0) / list.length);
}

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!;

describe('GAN layers', () => {
  let params: ParamFactory;
  before(async () => {
    await selectBackend({ prefer: 'wasm', logger: () => {} });
    params = ParamFactory.create(9, 'gan-layers');
  });
  after(() => disposeVariables(params.variables));

  it('equalized learning rate: N(0, 1/lrMul²) weights used times gain·lrMul/√fanIn, bias times lrMul', () => {
    const conv = createEqualizedConv2d(params.scope('conv'), {
      inChannels: 16,
      outChannels: 32,
      kernelSize: 3,
      gain: Math.SQRT2,
    });
    assert.ok(Math.abs(std(conv.kernel.dataSync()) - 1) < 0.03, 'stored weights ~N(0, 1)');
    assert.equal(conv.weightScale, Math.SQRT2 / Math.sqrt(3 * 3 * 16));
    const mapping = createEqualizedDense(params.scope('mapping'), {
      inFeatures: 64,
      outFeatures: 64,
      lrMultiplier: 0.01,
      biasInit: 0.5,
    });
    assert.ok(Math.abs(std(mapping.kernel.dataSync()) / 100 - 1) < 0.03, 'stored weights ~N(0, 100²)');
    assert.equal(mapping.weightScale, 0.01 / 8);
    assert.equal(mapping.biasScale, 0.01);
    assert.ok(Math.abs(mapping.bias!.dataSync()[0]! - 50) < 1e-4, 'stored bias = biasInit / lrMul');
    const affine = createEqualizedDense(params.scope('affine'), {
      inFeatures: 4,
      outFeatures: 3,
      biasInit: 1,
    });
    assert.deepEqual(Array.from(affine.bias!.dataSync()), [1, 1, 1]);
    tf.tidy(() => {
      const x = tf.randomNormal([5, 64], 0, 1, 'float32', 1);
      const manual = tf.add(tf.matMul(x, tf.mul(mapping.kernel, 0.01 / 8)), tf.mul(mapping.bias!, 0.01));
      assert.ok(maxDiff(equalizedDense(x, mapping), manual) < 1e-4);
      // The effective weights have the He scale: outputs of unit-variance inputs keep about gain² variance.
      const y = equalizedConv2d(tf.randomNormal([8, 8, 8, 16], 0, 1, 'float32', 2) as tf.Tensor4D, conv);
      assert.ok(Math.abs(std(y.dataSync()) - Math.SQRT2) < 0.15, `std ${std(y.dataSync())}`);
      const strided = equalizedConv2d(tf.zeros([1, 8, 8, 16]) as tf.Tensor4D, conv, { strides: 2 });
      assert.deepEqual(strided.shape, [1, 4, 4, 32]);
    });
  });

  it('pixel norm gives unit mean square over channels; lrelu gain is √2·LeakyReLU(0.2)', () => {
    tf.tidy(() => {
      const x = tf.randomNormal([2, 3, 3, 6], 0, 4, 'float32', 3);
      const meanSquare = tf.mean(tf.square(pixelNorm(x)), -1);
      assert.ok(maxDiff(meanSquare, tf.onesLike(meanSquare)) < 1e-4);
      const values = leakyReluGain(tf.tensor1d([-1, 0, 2])).dataSync();
      assert.ok(Math.abs(values[0]! + 0.2 * Math.SQRT2) < 1e-6);
      assert.ok(Math.abs(values[2]! - 2 * Math.SQRT2) < 1e-6);
    });
  });

  it('minibatch stddev: shape, group of sample i = i mod (N/G), value by hand', () => {
    assert.equal(minibatchGroupSize(8, 4), 4);
    assert.equal(minibatchGroupSize(6, 4), 3);
    assert.equal(minibatchGroupSize(5, 4), 1);
    assert.equal(minibatchGroupSize(2, 4), 2);
    tf.tidy(() => {
      // N = 4, group 2: groups {0, 2} and {1, 3}. H = W = 1, C = 2.
      const data = [1, 2, 10, 20, 3, 6, 14, 20];
      const x = tf.tensor4d(data, [4, 1, 1, 2]);
      const y = minibatchStddev(x, 2);
      assert.deepEqual(y.shape, [4, 1, 1, 3]);
      const groupStd = (a: number[], b: number[]) =>
        a.map((v, c) => Math.sqrt(((v - b[c]!) / 2) ** 2 + 1e-8)).reduce((s, v) => s + v, 0) / a.length;
      const g0 = groupStd([1, 2], [3, 6]);
      const g1 = groupStd([10, 20], [14, 20]);
      const stats = Array.from(tf.reshape(tf.slice(y, [0, 0, 0, 2], [4, 1, 1, 1]), [4]).dataSync());
      [g0, g1, g0, g1].forEach((expected, i) => assert.ok(Math.abs(stats[i]! - expected) < 1e-5, `${i}`));
      assert.deepEqual(Array.from(tf.slice(y, [0, 0, 0, 0], [4, 1, 1, 2]).dataSync()), data);
      // Spatial maps are constant per sample; two channel slices give two maps.
      const wide = minibatchStddev(tf.randomNormal([6, 3, 3, 4], 0, 1, 'float32', 4) as tf.Tensor4D, 4, 2);
      assert.deepEqual(wide.shape, [6, 3, 3, 6]);
      const map = tf.slice(wide, [1, 0, 0, 4], [1, 3, 3, 1]).dataSync();
      assert.ok(Array.from(map).every((v) => Math.abs(v - map[0]!) < 1e-6));
    });
  });

  it('black floor: −1 + softplus(k(x+1))/k by hand, reaches black below −1, ≈ identity above, gradient sigmoid', () => {
    const k = BLACK_FLOOR_SHARPNESS;
    const xs = [-3, -1.5, -1.3, -1, -0.7, 0, 0.6, 1];
    const x = tf.tensor1d(xs);
    const y = blackFloor(x, k);
    const values = Array.from(y.dataSync());
    xs.forEach((v, i) => {
      const expected = -1 + Math.log1p(Math.exp(k * (v + 1))) / k;
      assert.ok(Math.abs(values[i]! - expected) < 1e-5, `floor(${v}) = ${values[i]}, expected ${expected}`);
    });
    // Below −1.3 the output rounds to byte 0 (black): round((y + 1) · 127.5) = 0.
    for (const i of [0, 1, 2]) assert.equal(Math.round((values[i]! + 1) * 127.5), 0, `x = ${xs[i]}`);
    // Above −0.7 it is within 0.001 of x: the floor does not bend the intensities of the brain.
    for (const i of [4, 5, 6, 7])
      assert.ok(Math.abs(values[i]! - xs[i]!) < 1e-3, `x = ${xs[i]}: ${values[i]}`);
    const gradient = tf.grad((t: tf.Tensor) => tf.sum(blackFloor(t, k)))(x);
    const g = Array.from(gradient.dataSync());
    xs.forEach((v, i) =>
      assert.ok(Math.abs(g[i]! - 1 / (1 + Math.exp(-k * (v + 1)))) < 1e-5, `d floor/dx at ${v} = ${g[i]}`),
    );
    // No sharpness (configs made before the floor existed) or 0: the very same tensor, no op.
    assert.equal(blackFloor(x, undefined), x);
    assert.equal(blackFloor(x, 0), x);
    tf.dispose([x, y, gradient]);
  });

  it('leaky black floor: adds leak·min(x+1, 0), so the gradient below black never falls under the leak', () => {
    const k = BLACK_FLOOR_SHARPNESS;
    const leak = 0.05;
    const xs = [-5, -3, -1.3, -1, -0.7, 0, 0.6];
    const x = tf.tensor1d(xs);
    const y = blackFloor(x, k, leak);
    const gradient = tf.grad((t: tf.Tensor) => tf.sum(blackFloor(t, k, leak)))(x);
    const values = Array.from(y.dataSync());
    const g = Array.from(gradient.dataSync());
    xs.forEach((v, i) => {
      const expected = -1 + Math.log1p(Math.exp(k * (v + 1))) / k + leak * Math.min(v + 1, 0);
      assert.ok(Math.abs(values[i]! - expected) < 1e-5, `floor(${v}) = ${values[i]}, expected ${expected}`);
      if (v === -1) return; // the kink: any subgradient between the two sides will do
      const slope = 1 / (1 + Math.exp(-k * (v + 1))) + (v < -1 ? leak : 0);
      assert.ok(Math.abs(g[i]! - slope) < 1e-5, `d floor/dx at ${v} = ${g[i]}, expected ${slope}`);
    });
    // Still black as bytes down to x = −3 (y ≥ −1.1 rounds to byte 0 after clamping); the flat floor's gradient
    // there is ~1e-14, the leaky one's 0.05.
    assert.ok(values[1]! > -1.11 && values[1]! < -1);
    assert.ok(g[0]! >= leak - 1e-6);
    // Above black the leak changes nothing.
    const flat = blackFloor(x, k).dataSync();
    for (const i of [4, 5, 6]) assert.equal(values[i], flat[i]);
    // outputFloor reads both settings from a config; a config without them is a linear output.
    const viaConfig = outputFloor(x, { blackFloorSharpness: k, blackFloorLeak: leak });
    assert.deepEqual(Array.from(viaConfig.dataSync()), values);
    assert.equal(outputFloor(x, {}), x);
    viaConfig.dispose();
    tf.dispose([x, y, gradient]);
  });

  it('nearest upsampling and average downsampling', () => {
    tf.tidy(() => {
      const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
      assert.deepEqual(
        Array.from(upsampleNearest(x).dataSync()),
        [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4],
      );
      assert.deepEqual(Array.from(downsampleAverage(upsampleNearest(x)).dataSync()), [1, 2, 3, 4]);
    });
  });

  it('upfirdn2d matches a direct implementation (up 2 with gain 4, and down 2) and is differentiable twice', () => {
    const taps = [1, 3, 3, 1];
    const kernel = firKernel2d(taps, 1);
    assert.ok(Math.abs(kernel.flat().reduce((a, b) => a + b, 0) - 1) < 1e-12);
    // Reference: upsample by zero insertion, pad, correlate with the (symmetric) kernel, keep every down-th pixel.
    const reference = (image: number[][], up: number, down: number, pad: [number, number], gain: number) => {
      const k = firKernel2d(taps, gain);
      const size = image.length * up + pad[0] + pad[1];
      const padded = Array.from({ length: size }, () => new Array<number>(size).fill(0));
      image.forEach((row, y) =>
        row.forEach((v, x) => {
          padded[y * up + pad[0]]![x * up + pad[0]] = v;
        }),
      );
      const out: number[] = [];
      for (let y = 0; y + 4 <= size; y += down) {
        for (let x = 0; x + 4 <= size; x += down) {
          let sum = 0;
          for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) sum += padded[y + i]![x + j]! * k[i]![j]!;
          out.push(sum);
        }
      }
      return out;
    };
    const image = [
      [1, 2, 0, -1],
      [0, 3, 1, 2],
      [4, -2, 0, 1],
      [1, 1, 1, 1],
    ];
    tf.tidy(() => {
      // Two channels (the second = 2 × the first) in a batch of one.
      const x = tf.tensor4d(
        image.flat().flatMap((v) => [v, 2 * v]),
        [1, 4, 4, 2],
      );
      const up = upfirdn2d(x, taps, { up: 2, padding: [2, 1], gain: 4 });
      assert.deepEqual(up.shape, [1, 8, 8, 2]);
      const expectedUp = reference(image, 2, 1, [2, 1], 4);
      const upValues = up.dataSync();
      expectedUp.forEach((v, i) => assert.ok(Math.abs(upValues[2 * i]! - v) < 1e-5, `up ${i}`));
      expectedUp.forEach((v, i) => assert.ok(Math.abs(upValues[2 * i + 1]! - 2 * v) < 1e-5));
      const down = upfirdn2d(x, taps, { down: 2, padding: [1, 1] });
      assert.deepEqual(down.shape, [1, 2, 2, 2]);
      const expectedDown = reference(image, 1, 2, [1, 1], 1);
      expectedDown.forEach((v, i) => assert.ok(Math.abs(down.dataSync()[2 * i]! - v) < 1e-5, `down ${i}`));
      const cropped = upfirdn2d(x, taps, { padding: [-1, 2] });
      assert.deepEqual(cropped.shape, [1, 2, 2, 2]);

      // R1 through a blur-then-conv D: a gradient of a gradient exists and is finite.
      const w = tf.variable(tf.randomNormal([3, 3, 2, 1], 0, 1, 'float32', 5));
      const score = (images: tf.Tensor4D) =>
        tf.sum(
          tf.conv2d(upfirdn2d(images, taps, { down: 2, padding: [1, 1] }), w as tf.Tensor4D, 1, 'same'),
          [1, 2, 3],
        );
      const { grads } = tf.variableGrads(() => r1Penalty(score, x, { gamma: 1 }), [w]);
      const g = grads[w.name]!.dataSync();
      assert.ok(g.every(Number.isFinite) && g.some((v) => v !== 0));
      w.dispose();
    });
  });
});
