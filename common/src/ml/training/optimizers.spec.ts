// The optimizers against float64 reference implementations of torch's SGD (Nesterov) and AdamW, the LR schedules,
// and state round trips that continue bit-identically.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import {
  createOptimizer,
  decodeOptimizerState,
  encodeOptimizerState,
  learningRateAt,
  paperSwinOptimizer,
  paperUNetOptimizer,
  validateOptimizerSpec,
  type OptimizerSpec,
} from './optimizers.js';

const START = [0.5, -1.25, 2, 0.01];
const GRADS = [
  [0.1, -0.2, 0.3, 0.05],
  [-0.4, 0.1, 0.2, 0.0],
  [0.25, 0.25, -0.5, 1.5],
];

function makeVariables(values = START): Record<string, tf.Variable> {
  return {
    'layer/kernel': tf.variable(tf.tensor(values, [2, 2])),
    'layer/bias': tf.variable(tf.tensor([0.3, -0.3])),
  };
}

function kernelGrad(step: number): Record<string, tf.Tensor> {
  return { 'layer/kernel': tf.tensor(GRADS[step % GRADS.length], [2, 2]) };
}

function dispose(variables: Record<string, tf.Variable>): void {
  Object.values(variables).forEach((variable) => variable.dispose());
}

function assertClose(actual: ArrayLike<number>, expected: number[], tolerance = 1e-6): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const scale = Math.max(1, Math.abs(expected[i]));
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tolerance * scale,
      `[${i}] ${actual[i]} vs ${expected[i]}`,
    );
  }
}

describe('optimizers', () => {
  it('SGD with Nesterov momentum and L2 weight decay follows torch.optim.SGD', () => {
    const spec: OptimizerSpec = { type: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 };
    const variables = makeVariables();
    const optimizer = createOptimizer(spec, variables);
    const p = [...START];
    const buffer = [0, 0, 0, 0];
    for (let step = 0; step < 3; step++) {
      const grads = kernelGrad(step);
      optimizer.apply(grads, 0.1);
      tf.dispose(grads);
      for (let i = 0; i < 4; i++) {
        const g = GRADS[step][i] + 0.01 * p[i];
        buffer[i] = 0.9 * buffer[i] + g;
        p[i] -= 0.1 * (g + 0.9 * buffer[i]);
      }
    }
    assertClose(variables['layer/kernel'].dataSync(), p);
    // The bias had no gradient: only weight decay moved it, through the momentum buffer.
    let bias = 0.3;
    let biasBuffer = 0;
    for (let step = 0; step < 3; step++) {
      const g = 0.01 * bias;
      biasBuffer = 0.9 * biasBuffer + g;
      bias -= 0.1 * (g + 0.9 * biasBuffer);
    }
    assertClose(variables['layer/bias'].dataSync(), [bias, -bias]);
    assert.equal(optimizer.step, 3);
    optimizer.dispose();
    dispose(variables);
  });

  it('AdamW follows torch.optim.AdamW (decoupled weight decay, bias correction)', () => {
    const spec: OptimizerSpec = {
      type: 'adamw',
      lr: 0.01,
      weightDecay: 0.05,
      beta1: 0.9,
      beta2: 0.99,
      epsilon: 1e-6,
    };
    const variables = makeVariables();
    const optimizer = createOptimizer(spec, variables);
    const p = [...START];
    const m = [0, 0, 0, 0];
    const v = [0, 0, 0, 0];
    const lrs = [0.01, 0.008, 0.005];
    for (let step = 0; step < 3; step++) {
      const grads = kernelGrad(step);
      optimizer.apply(grads, lrs[step]);
      tf.dispose(grads);
      const t = step + 1;
      for (let i = 0; i < 4; i++) {
        const g = GRADS[step][i];
        p[i] *= 1 - lrs[step] * 0.05;
        m[i] = 0.9 * m[i] + 0.1 * g;
        v[i] = 0.99 * v[i] + 0.01 * g * g;
        const denominator = Math.sqrt(v[i]) / Math.sqrt(1 - 0.99 ** t) + 1e-6;
        p[i] -= (lrs[step] / (1 - 0.9 ** t)) * (m[i] / denominator);
      }
    }
    assertClose(variables['layer/kernel'].dataSync(), p);
    optimizer.dispose();
    dispose(variables);
  });

  it('clips the global gradient norm like clip_grad_norm_', () => {
    const variables = makeVariables();
    const optimizer = createOptimizer({ type: 'sgd', lr: 1, clipNorm: 0.1 }, variables);
    const grads = kernelGrad(2);
    optimizer.apply(grads, 1);
    tf.dispose(grads);
    const norm = Math.hypot(...GRADS[2]);
    assertClose(
      variables['layer/kernel'].dataSync(),
      START.map((p, i) => p - (GRADS[2][i] * 0.1) / (norm + 1e-6)),
    );
    optimizer.dispose();
    dispose(variables);
  });

  it('poly schedule with warm-up, and the paper presets', () => {
    const poly: OptimizerSpec = {
      type: 'sgd',
      lr: 0.01,
      momentum: 0.99,
      schedule: { type: 'poly', power: 0.9 },
    };
    assert.equal(learningRateAt(poly, 0, 1000), 0.01);
    assert.ok(Math.abs(learningRateAt(poly, 500, 1000) - 0.01 * 0.5 ** 0.9) < 1e-15);
    assert.equal(learningRateAt(poly, 1000, 1000), 0);
    assert.equal(learningRateAt({ type: 'adamw', lr: 0.001 }, 77, 100), 0.001);
    const warm: OptimizerSpec = {
      type: 'adamw',
      lr: 1,
      schedule: { type: 'constant', warmupSteps: 10, warmupRatio: 0.1 },
    };
    assert.ok(Math.abs(learningRateAt(warm, 0, 100) - 0.1) < 1e-12);
    assert.ok(Math.abs(learningRateAt(warm, 5, 100) - 0.55) < 1e-12);
    assert.equal(learningRateAt(warm, 10, 100), 1);

    const unet = paperUNetOptimizer();
    assert.deepEqual(
      [unet.momentum, unet.nesterov, unet.schedule],
      [0.99, true, { type: 'poly', power: 0.9 }],
    );
    assert.equal(paperSwinOptimizer().lr, 6e-5);
    validateOptimizerSpec(unet);
    validateOptimizerSpec(paperSwinOptimizer());
    assert.throws(
      () => validateOptimizerSpec({ type: 'sgd', lr: 0.1, momentum: 1 }),
      /momentum must be in \[0, 1\)/,
    );
    assert.throws(
      () => validateOptimizerSpec({ type: 'sgd', lr: 0.1, nesterov: true }),
      /nesterov needs momentum/,
    );
    assert.throws(() => createOptimizer({ type: 'rmsprop' } as unknown as OptimizerSpec, {}), /unknown type/);
  });

  for (const spec of [
    { type: 'sgd', lr: 0.05, momentum: 0.99, nesterov: true, weightDecay: 3e-5 },
    { type: 'adamw', lr: 0.01 },
    { type: 'sgd', lr: 0.1 },
  ] as OptimizerSpec[]) {
    it(`${JSON.stringify(spec)}: state through a blob continues bit-identically; no tensor leaks per step`, () => {
      const a = makeVariables();
      const optimizerA = createOptimizer(spec, a);
      for (let step = 0; step < 3; step++) {
        const grads = kernelGrad(step);
        optimizerA.apply(grads, 0.05);
        tf.dispose(grads);
      }
      const blob = encodeOptimizerState(optimizerA.state());
      const restored = decodeOptimizerState(blob);
      assert.equal(restored.step, 3);
      assert.deepEqual(restored.spec, spec);

      const b = makeVariables();
      tf.tidy(() => Object.entries(a).forEach(([name, variable]) => b[name].assign(variable)));
      const optimizerB = createOptimizer(spec, b);
      optimizerB.loadState(restored);
      const before = tf.memory().numTensors;
      for (let step = 3; step < 6; step++) {
        for (const optimizer of [optimizerA, optimizerB]) {
          const grads = kernelGrad(step);
          optimizer.apply(grads, 0.05);
          tf.dispose(grads);
        }
      }
      assert.equal(tf.memory().numTensors, before, 'tensors leaked across steps');
      for (const name of Object.keys(a)) assert.deepEqual(b[name].dataSync(), a[name].dataSync());
      assert.equal(optimizerB.step, 6);

      assert.throws(
        () => createOptimizer({ type: spec.type === 'sgd' ? 'adamw' : 'sgd', lr: 1 }, b).loadState(restored),
        /cannot load/,
      );
      for (const optimizer of [optimizerA, optimizerB]) optimizer.dispose();
      dispose(a);
      dispose(b);
    });
  }

  it('refuses gradients for unknown variables and state that does not fit', () => {
    const variables = makeVariables();
    const optimizer = createOptimizer({ type: 'adamw', lr: 0.1 }, variables);
    const stray = { other: tf.scalar(1) };
    assert.throws(() => optimizer.apply(stray, 0.1), /unknown variable "other"/);
    tf.dispose(stray);
    const state = optimizer.state();
    const fewer = { 'layer/kernel': variables['layer/kernel'] };
    const other = createOptimizer({ type: 'adamw', lr: 0.1 }, fewer);
    assert.throws(() => other.loadState(state), /unexpected: m\/layer\/bias, v\/layer\/bias/);
    other.dispose();
    optimizer.dispose();
    dispose(variables);
  });
});
