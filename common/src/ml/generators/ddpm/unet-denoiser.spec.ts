// The denoiser U-Net: shapes, names, initialisation, gradients, and training on wasm.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../../util/rng.js';
import { createOptimizer } from '../../training/optimizers.js';
import { buildDdpm, ddpmConfig, ddpmLossAndGrads, normals } from './ddpm.js';
import { ddpmOptimizer } from './ddpm-task.js';
import { randomImages, snapshot, tinyModel, useWasm } from './ddpm-spec-helpers.js';
import { ParamFactory, disposeVariables, groupNorm } from '../../layers/index.js';
import {
  DIFFUSION_UNET_PROFILES,
  attention,
  buildDiffusionUNet,
  createAttention,
  timestepEmbedding,
  validateDiffusionUNetConfig,
  type DiffusionUNetConfig,
} from './unet-denoiser.js';

describe('diffusion U-Net', () => {
  before(useWasm);

  it('predicts ε of the input’s shape at two resolutions, for every profile that fits a test', () => {
    const tiny = buildDiffusionUNet(DIFFUSION_UNET_PROFILES.tiny, 1);
    const cpu32 = buildDiffusionUNet(DIFFUSION_UNET_PROFILES.cpu32, 1);
    const cpu = buildDiffusionUNet(DIFFUSION_UNET_PROFILES.cpu, 1);
    after(() => [tiny, cpu32, cpu].forEach((model) => model.dispose()));
    tf.tidy(() => {
      for (const [model, sizes] of [
        [tiny, [16, 32]],
        [cpu32, [32, 16]],
        [cpu, [64, 8]],
      ] as const) {
        for (const size of sizes) {
          const out = model.forward(randomImages(size, 2, size), [0, 7]);
          assert.deepEqual(out.shape, [2, size, size, 5], `${model.config.imageSize} profile at ${size}²`);
        }
      }
      assert.throws(() => tiny.forward(randomImages(1, 1, 15), [0]), /not divisible/);
      assert.throws(() => tiny.forward(randomImages(1, 1, 16, 4), [0]), /4 channels, expected 5/);
      assert.throws(() => tiny.forward(randomImages(1, 2, 16), [0]), /1 timesteps for 2 images/);
    });
  });

  it('names its variables by structure, with a 1×1 skip only where a res block changes channels', () => {
    const model = buildDiffusionUNet(DIFFUSION_UNET_PROFILES.tiny, 1);
    after(() => model.dispose());
    const names = Object.keys(model.variables);
    for (const name of [
      'time/dense0/kernel',
      'time/dense1/bias',
      'in/kernel',
      'down0/res0/norm1/gamma',
      'down0/res0/conv1/kernel',
      'down0/res0/time/kernel',
      'down0/res0/conv2/kernel',
      'down0/downsample/kernel',
      'down1/res0/skip/kernel', // 8 -> 16 channels
      'down1/attn0/qkv/kernel', // 8² = attention resolution
      'mid/res0/conv1/kernel',
      'mid/attn/proj/kernel',
      'up1/res1/skip/kernel',
      'up1/upsample/kernel',
      'up0/res1/conv2/bias',
      'out/norm/beta',
      'out/conv/kernel',
    ]) {
      assert.ok(names.includes(name), `missing ${name}`);
    }
    assert.ok(!names.includes('down0/res0/skip/kernel'));
    assert.ok(!names.some((name) => name.startsWith('down0/attn')), 'no attention at 16²');
    assert.deepEqual(model.variables['down1/attn0/qkv/kernel']!.shape, [16, 48]);
    // up1 concatenates 16 (bottom) + 16 (down1/res0) channels, up0/res0 16 + 8 (the downsampling conv's
    // output).
    assert.deepEqual(model.variables['up1/res0/conv1/kernel']!.shape, [3, 3, 32, 16]);
    assert.deepEqual(model.variables['up0/res0/conv1/kernel']!.shape, [3, 3, 24, 8]);
    assert.deepEqual(model.architecture, { name: 'ddpm-unet', config: DIFFUSION_UNET_PROFILES.tiny });
  });

  it('starts as ε̂ = 0 (zero-initialised output layers) and draws weights from (seed, name) only', () => {
    const a = buildDiffusionUNet(DIFFUSION_UNET_PROFILES.tiny, 3);
    const b = buildDiffusionUNet(DIFFUSION_UNET_PROFILES.tiny, 3);
    const c = buildDiffusionUNet(DIFFUSION_UNET_PROFILES.tiny, 4);
    after(() => [a, b, c].forEach((model) => model.dispose()));
    assert.deepEqual(snapshot(a.variables), snapshot(b.variables));
    assert.notDeepEqual(snapshot(a.variables).get('in/kernel'), snapshot(c.variables).get('in/kernel'));
    tf.tidy(() => {
      const out = a.forward(randomImages(2, 2, 16), [3, 40]);
      assert.equal(tf.max(tf.abs(out)).dataSync()[0], 0);
    });
  });

  it('embeds timesteps as [cos(t·f_i), sin(t·f_i)], f_i = 10000^(−i/half)', () => {
    const embedding = timestepEmbedding([0, 3, 999], 8);
    assert.deepEqual([...embedding.subarray(0, 8)], [1, 1, 1, 1, 0, 0, 0, 0]);
    for (const [row, t] of [
      [1, 3],
      [2, 999],
    ] as const) {
      for (let i = 0; i < 4; i++) {
        const angle = t * 10_000 ** (-i / 4);
        assert.ok(Math.abs(embedding[row * 8 + i]! - Math.cos(angle)) < 1e-6);
        assert.ok(Math.abs(embedding[row * 8 + 4 + i]! - Math.sin(angle)) < 1e-6);
      }
    }
  });

  it('attends per head: equals softmax(q_h k_hᵀ/√d) v_h computed head by head on channel slices', () => {
    const params = ParamFactory.create(2);
    after(() => disposeVariables(params.variables));
    const heads = 2;
    const c = 8;
    const d = c / heads;
    const block = createAttention(params.scope('attn'), c, heads, 4);
    tf.tidy(() => {
      block.proj.kernel.assign(tf.randomNormal([c, c], 0, 0.3, 'float32', 1));
      block.proj.bias!.assign(tf.randomNormal([c], 0, 0.3, 'float32', 2));
      const x = tf.randomNormal([2, 4, 3, c], 0, 1, 'float32', 3) as tf.Tensor4D;
      const tokens = tf.reshape(groupNorm(x, block.norm), [2, 12, c]);
      const qkv = tf.add(tf.matMul(tf.reshape(tokens, [24, c]), block.qkv.kernel), block.qkv.bias!);
      const perHead = Array.from({ length: heads }, (_, h) => {
        const part = (offset: number) => tf.reshape(tf.slice(qkv, [0, offset + h * d], [24, d]), [2, 12, d]);
        const [q, k, v] = [part(0), part(c), part(2 * c)];
        return tf.matMul(tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(d))), v);
      });
      const mixed = tf.reshape(tf.concat(perHead, 2), [24, c]);
      const expected = tf.add(
        x,
        tf.reshape(tf.add(tf.matMul(mixed, block.proj.kernel), block.proj.bias!), x.shape),
      );
      assert.ok(tf.max(tf.abs(tf.sub(attention(x, block), expected))).dataSync()[0]! < 1e-5);
    });
  });

  it('refuses inconsistent configs, listing the problems', () => {
    const tiny: DiffusionUNetConfig = { ...DIFFUSION_UNET_PROFILES.tiny, channelMults: [1, 2] };
    assert.throws(
      () => validateDiffusionUNetConfig({ ...tiny, groups: 3 }),
      /8 channels do not split into 3 groups/,
    );
    assert.throws(
      () => validateDiffusionUNetConfig({ ...tiny, attentionResolutions: [4] }),
      /attention at 4² matches no level \(16, 8\)/,
    );
    assert.throws(() => validateDiffusionUNetConfig({ ...tiny, imageSize: 17 }), /not divisible by 2\^1/);
    assert.throws(() => validateDiffusionUNetConfig({ ...tiny, numHeads: 3 }), /do not split into 3 heads/);
  });
});

describe('diffusion U-Net training on wasm', () => {
  before(useWasm);

  it('gives every variable a finite, non-zero gradient of the diffusion loss', () => {
    const fresh = buildDdpm(ddpmConfig('tiny'), 5);
    const trained = tinyModel(5);
    after(() => [fresh, trained].forEach((model) => model.dispose()));
    const rng = createRng('grads');
    const x0 = randomImages('grads-x0', 2, 16);
    const noise = tf.tensor4d(normals(rng, 2 * 16 * 16 * 5), [2, 16, 16, 5]);
    after(() => tf.dispose([x0, noise]));
    // Fresh: a gradient for every variable (behind the zero-initialised layers they are exactly 0).
    {
      const { loss, grads } = ddpmLossAndGrads(fresh, x0, [4, 33], noise);
      assert.deepEqual(Object.keys(grads).sort(), Object.keys(fresh.variables).sort());
      assert.ok(tf.tidy(() => tf.norm(grads['out/conv/kernel']!).dataSync()[0]!) > 0);
      tf.dispose([loss, ...Object.values(grads)]);
    }
    // Trained (perturbed) weights: every gradient is finite and non-zero.
    const { loss, grads } = ddpmLossAndGrads(trained, x0, [4, 33], noise);
    const norms = Object.fromEntries(
      Object.entries(grads).map(([name, grad]) => [name, tf.tidy(() => tf.norm(grad).dataSync()[0]!)]),
    );
    tf.dispose([loss, ...Object.values(grads)]);
    assert.equal(Object.keys(norms).length, Object.keys(trained.variables).length);
    const bad = Object.entries(norms).filter(([, norm]) => !(Number.isFinite(norm) && norm > 0));
    assert.deepEqual(bad, [], 'variables without a useful gradient');
  });

  it('one Adam step changes every trained weight, and the tensor count stays flat over steps', () => {
    const model = tinyModel(6);
    const optimizer = createOptimizer(ddpmOptimizer(), model.variables);
    const x0 = randomImages('step', 2, 16);
    after(() => {
      model.dispose();
      optimizer.dispose();
      x0.dispose();
    });
    const rng = createRng('step-noise');
    const before = snapshot(model.variables);
    const counts: number[] = [];
    for (let step = 0; step < 5; step++) {
      const noise = tf.tensor4d(normals(rng, 2 * 16 * 16 * 5), [2, 16, 16, 5]);
      const { loss, grads } = ddpmLossAndGrads(model, x0, [rng.int(50), rng.int(50)], noise);
      optimizer.apply(grads, 1e-4);
      tf.dispose([loss, noise, ...Object.values(grads)]);
      counts.push(tf.memory().numTensors);
      if (step === 0) {
        const afterOne = snapshot(model.variables);
        const unchanged = [...before].filter(([name, values]) => {
          const now = afterOne.get(name)!;
          return values.every((value, i) => value === now[i]);
        });
        assert.deepEqual(unchanged, [], 'variables an update left unchanged');
      }
    }
    assert.equal(new Set(counts).size, 1, `tensor counts ${counts}`);
  });

  const variants = [
    { prediction: 'epsilon' },
    { prediction: 'v' },
    { prediction: 'v', censorBlack: true },
  ] as const;
  for (const variant of variants) {
    const name = `${variant.prediction}-prediction${'censorBlack' in variant ? ', black censored' : ''}`;
    it(`overfits one fixed batch (tiny profile, ${name}, 30 Adam steps): the loss falls`, () => {
      const model = buildDdpm(ddpmConfig('tiny', variant), 7);
      const lr = 3e-3;
      const optimizer = createOptimizer(ddpmOptimizer({ lr }), model.variables);
      // A wave, black (−1) wherever it dips below −0.5, as slices are black outside the brain.
      const x0 = tf.tidy(() => {
        const wave = tf
          .sin(tf.mul(tf.range(0, 4 * 16 * 16 * 5), 0.37))
          .mul(0.8)
          .reshape([4, 16, 16, 5]);
        return tf.where(tf.less(wave, -0.5), tf.fill(wave.shape, -1), wave);
      });
      const noise = tf.tensor4d(normals(createRng('overfit'), 4 * 16 * 16 * 5), [4, 16, 16, 5]);
      after(() => {
        model.dispose();
        optimizer.dispose();
        tf.dispose([x0, noise]);
      });
      const losses: number[] = [];
      for (let step = 0; step < 30; step++) {
        const { loss, grads } = ddpmLossAndGrads(model, x0 as tf.Tensor4D, [5, 15, 30, 45], noise);
        losses.push(loss.dataSync()[0]!);
        optimizer.apply(grads, lr);
        tf.dispose([loss, ...Object.values(grads)]);
      }
      assert.ok(losses.every(Number.isFinite), `losses ${losses}`);
      assert.ok(losses[29]! < 0.6 * losses[0]!, `loss ${losses[0]} -> ${losses[29]}`);
    });
  }
});
