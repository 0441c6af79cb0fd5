// Whole-model checks for the wasm training kernels: registration, gradients of small U-Net and Swin-like
// models equal to the cpu backend's, and a conv net that trains on wasm without leaking tensors.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { assertClose, prepareBackends, runOn, type InputSpec } from './kernel-test-utils.js';
import {
  WASM_TRAINING_KERNEL_NAMES,
  registerWasmTrainingKernels,
  registeredWasmTrainingKernels,
  unregisterWasmTrainingKernels,
} from './wasm-training-kernels.js';

type T4 = tf.Tensor4D;

function instanceNorm(x: T4): T4 {
  const { mean, variance } = tf.moments(x, [1, 2], true);
  return tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5)));
}

function segmentationLoss(logits: T4, labels: T4): tf.Scalar {
  const probs = tf.softmax(logits);
  const crossEntropy = tf.losses.softmaxCrossEntropy(labels, logits);
  const overlap = tf.sum(tf.mul(probs, labels), [0, 1, 2]);
  const total = tf.add(tf.sum(probs, [0, 1, 2]), tf.sum(labels, [0, 1, 2]));
  const dice = tf.mean(tf.div(tf.add(tf.mul(overlap, 2), 1e-5), tf.add(total, 1e-5)));
  return tf.add(crossEntropy, tf.sub(1, dice));
}

/** One-hot labels made from seeded values, so both backends see the same targets. */
function labelsFrom(noise: tf.Tensor, classes: number): T4 {
  const ids = tf.cast(tf.floor(tf.mul(tf.add(noise, 1), classes / 2 - 1e-3)), 'int32');
  return tf.oneHot(ids, classes).toFloat() as T4;
}

const UNET_WEIGHTS: Record<string, number[]> = {
  enc: [3, 3, 4, 8],
  down: [3, 3, 8, 8],
  mid: [3, 3, 8, 8],
  upT: [2, 2, 8, 8],
  upN: [3, 3, 8, 8],
  dec: [3, 3, 24, 8],
  head: [1, 1, 8, 3],
};

/** Strided conv down, transposed conv and nearest upsampling up, average pooling, instance norm, LeakyReLU. */
function tinyUnet(w: Record<string, tf.Tensor>, x: T4): T4 {
  const block = (input: T4, filter: string, stride = 1): T4 =>
    tf.leakyRelu(instanceNorm(tf.conv2d(input, w[filter] as T4, stride, 'same')), 0.01);
  const skip = block(x, 'enc');
  const low = block(block(skip, 'down', 2), 'mid');
  const [b, h, wd, c] = skip.shape;
  const upT = tf.conv2dTranspose(low, w['upT'] as T4, [b, h, wd, c], 2, 'same');
  const upN = block(tf.image.resizeNearestNeighbor(tf.avgPool(skip, 2, 2, 'valid'), [h, wd]), 'upN');
  const merged = block(tf.concat([upT, upN, skip], 3), 'dec');
  return tf.conv2d(merged, w['head'] as T4, 1, 'same');
}

const SWIN = { dim: 16, heads: 2, window: 2 };
const SWIN_WEIGHTS: Record<string, number[]> = {
  embed: [2, 2, 4, SWIN.dim],
  qkv: [SWIN.dim, 3 * SWIN.dim],
  proj: [SWIN.dim, SWIN.dim],
  bias: [(2 * SWIN.window - 1) ** 2, SWIN.heads],
  fc1: [SWIN.dim, 2 * SWIN.dim],
  fc2: [2 * SWIN.dim, SWIN.dim],
  merge: [4 * SWIN.dim, 2 * SWIN.dim],
  head: [2 * SWIN.dim, 3],
};

function relativePositionIndex(window: number): tf.Tensor1D {
  const ids: number[] = [];
  for (let a = 0; a < window * window; a++) {
    for (let b = 0; b < window * window; b++) {
      const dy = Math.floor(a / window) - Math.floor(b / window) + window - 1;
      const dx = (a % window) - (b % window) + window - 1;
      ids.push(dy * (2 * window - 1) + dx);
    }
  }
  return tf.tensor1d(ids, 'int32');
}

function layerNorm(x: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5)));
}

const gelu = (x: tf.Tensor): tf.Tensor => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));

/** Patch embedding, window attention with a gathered relative-position bias, GELU MLP, patch merging. */
function tinySwin(w: Record<string, tf.Tensor>, x: T4): T4 {
  const { heads, window } = SWIN;
  const weight = (name: string): tf.Tensor2D => w[name] as tf.Tensor2D;
  let h = tf.conv2d(x, w['embed'] as T4, 2, 'valid');
  const [B, H, W, C] = h.shape;
  const windows = (H / window) * (W / window);
  const tokens = window * window;
  const headDim = C / heads;
  const partition = tf.reshape(
    tf.transpose(
      tf.reshape(layerNorm(h), [B, H / window, window, W / window, window, C]),
      [0, 1, 3, 2, 4, 5],
    ),
    [-1, C],
  );
  const qkv = tf.reshape(tf.matMul(partition, weight('qkv')), [B * windows, tokens, 3, heads, headDim]);
  const [q, k, v] = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4])) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
  const bias = tf.transpose(
    tf.reshape(tf.gather(w['bias'] as tf.Tensor, relativePositionIndex(window)), [tokens, tokens, heads]),
    [2, 0, 1],
  );
  const attention = tf.softmax(tf.add(tf.matMul(tf.mul(q, 1 / Math.sqrt(headDim)), k, false, true), bias));
  const attended = tf.reshape(tf.transpose(tf.matMul(attention, v), [0, 2, 1, 3]), [-1, C]);
  const projected = tf.reshape(tf.matMul(attended, weight('proj')), [
    B,
    H / window,
    W / window,
    window,
    window,
    C,
  ]);
  h = tf.add(h, tf.reshape(tf.transpose(projected, [0, 1, 3, 2, 4, 5]), [B, H, W, C]));
  const mlp = tf.matMul(gelu(tf.matMul(tf.reshape(layerNorm(h), [-1, C]), weight('fc1'))), weight('fc2'));
  h = tf.add(h, tf.reshape(mlp, [B, H, W, C]));
  const merged = tf.reshape(tf.transpose(tf.reshape(h, [B, H / 2, 2, W / 2, 2, C]), [0, 1, 3, 4, 2, 5]), [
    -1,
    4 * C,
  ]);
  const logits = tf.matMul(tf.matMul(merged, weight('merge')), weight('head'));
  return tf.image.resizeBilinear(tf.reshape(logits, [B, H / 2, W / 2, 3]), [x.shape[1], x.shape[2]]) as T4;
}

function weightSpecs(shapes: Record<string, number[]>): Record<string, InputSpec> {
  return Object.fromEntries(
    Object.entries(shapes).map(([name, shape], i) => [name, { shape, seed: 100 + i }]),
  );
}

function gradientsOf(
  model: (w: Record<string, tf.Tensor>, x: T4) => T4,
  weightNames: string[],
  scale: number,
): (t: Record<string, tf.Tensor>) => tf.Tensor[] {
  return (t) => {
    const x = t['x'] as T4;
    const labels = labelsFrom(t['noise'] as tf.Tensor, 3);
    const weights = weightNames.map((name) => tf.mul(t[name] as tf.Tensor, scale));
    const loss = (...ws: tf.Tensor[]) =>
      segmentationLoss(
        model(Object.fromEntries(weightNames.map((n, i) => [n, ws[i] as tf.Tensor])), x),
        labels,
      );
    return tf.grads(loss)(weights);
  };
}

describe('wasm training kernels', () => {
  before(prepareBackends);

  it('registers idempotently and can put the stock kernels back', async () => {
    assert.deepEqual(registeredWasmTrainingKernels(), WASM_TRAINING_KERNEL_NAMES);
    const again = registerWasmTrainingKernels();
    assert.deepEqual(again.registered, []);
    assert.deepEqual(again.alreadyRegistered, WASM_TRAINING_KERNEL_NAMES);

    unregisterWasmTrainingKernels(['Conv2DBackpropInput']);
    assert.ok(!registeredWasmTrainingKernels().includes('Conv2DBackpropInput'));
    const inputs = { x: { shape: [1, 3, 3, 4], seed: 1 }, w: { shape: [2, 2, 2, 4], seed: 2 } };
    const transposed = ({ x, w }: Record<string, tf.Tensor>) =>
      tf.conv2dTranspose(x as T4, w as T4, [1, 6, 6, 2], 2, 'same');
    // The restored stock kernel must still work after the backend was initialised.
    assertClose(await runOn('wasm', inputs, transposed), await runOn('cpu', inputs, transposed), 'stock');
    const restored = registerWasmTrainingKernels(['Conv2DBackpropInput']);
    assert.deepEqual(restored.replacedStock, ['Conv2DBackpropInput']);
    assert.deepEqual(registeredWasmTrainingKernels(), WASM_TRAINING_KERNEL_NAMES);
  });

  it('gives a small U-Net the same gradients as the cpu backend', async () => {
    const inputs = {
      x: { shape: [2, 12, 10, 4], seed: 1 },
      noise: { shape: [2, 12, 10], seed: 2 },
      ...weightSpecs(UNET_WEIGHTS),
    };
    const compute = gradientsOf(tinyUnet, Object.keys(UNET_WEIGHTS), 0.3);
    assertClose(await runOn('wasm', inputs, compute), await runOn('cpu', inputs, compute), 'U-Net grads');
  });

  it('gives a small Swin block the same gradients as the cpu backend', async () => {
    const inputs = {
      x: { shape: [2, 8, 8, 4], seed: 3 },
      noise: { shape: [2, 8, 8], seed: 4 },
      ...weightSpecs(SWIN_WEIGHTS),
    };
    const compute = gradientsOf(tinySwin, Object.keys(SWIN_WEIGHTS), 0.3);
    assertClose(await runOn('wasm', inputs, compute), await runOn('cpu', inputs, compute), 'Swin grads');
  });

  it('trains a conv net on wasm: loss falls over 20 steps on one batch, tensor count stays flat', async () => {
    await tf.setBackend('wasm');
    const weights = Object.fromEntries(
      Object.entries(UNET_WEIGHTS).map(([name, shape], i) => [
        name,
        tf.variable(
          tf.randomNormal(
            shape,
            0,
            Math.sqrt(2 / ((shape[0] ?? 1) * (shape[1] ?? 1) * (shape[2] ?? 1))),
            'float32',
            i + 1,
          ),
        ),
      ]),
    );
    const x = tf.randomNormal<tf.Rank.R4>([4, 16, 16, 4], 0, 1, 'float32', 42);
    const labels = tf.tidy(() => labelsFrom(tf.randomUniform([4, 16, 16], -1, 1, 'float32', 43), 3));
    const optimizer = tf.train.adam(0.01);
    const losses: number[] = [];
    const tensorCounts: number[] = [];
    const bufferCounts: number[] = [];
    for (let step = 0; step < 20; step++) {
      const loss = optimizer.minimize(() => segmentationLoss(tinyUnet(weights, x), labels), true);
      losses.push(loss?.dataSync()[0] ?? Number.NaN);
      loss?.dispose();
      tensorCounts.push(tf.memory().numTensors);
      bufferCounts.push(tf.backend().numDataIds());
    }
    const first = losses[0] ?? Number.NaN;
    const last = losses[losses.length - 1] ?? Number.NaN;
    assert.ok(Number.isFinite(first) && Number.isFinite(last), `losses ${losses}`);
    assert.ok(last < 0.6 * first, `loss should fall: ${first.toFixed(4)} -> ${last.toFixed(4)}`);
    // Optimizer slots appear on the first step; from then on nothing may accumulate.
    assert.deepEqual(new Set(tensorCounts.slice(1)).size, 1, `tensor counts ${tensorCounts}`);
    assert.deepEqual(new Set(bufferCounts.slice(1)).size, 1, `wasm buffer counts ${bufferCounts}`);
    optimizer.dispose();
    tf.dispose([x, labels, ...Object.values(weights)]);
  });
});
