import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { countParameters } from '../../layers/index.js';
import { encodeWeights, variablesToWeights } from '../../weights/index.js';
import { blackFloor } from '../gan/layers.js';
import { ganArchitecture, loadGenerator } from '../gan/registry.js';
import { GAN_CHANNELS } from '../gan/types.js';
import { STYLEGAN2_PROFILES, buildStyleGan2, type StyleGan2Config } from './index.js';
import {
  changedVariables,
  latents,
  localGanStep,
  maxAbsDiff,
  realBatch,
  snapshot,
  useWasm,
} from './stylegan-spec-helpers.js';
import { upsample2d } from './upfirdn.js';

const TINY: StyleGan2Config = STYLEGAN2_PROFILES.tiny;

describe('StyleGAN 2', () => {
  before(useWasm);

  it('registers as stylegan2 with the three profiles, non-saturating + lazy R1 and path length', () => {
    const entry = ganArchitecture('stylegan2');
    assert.equal(entry.loss, 'nonsaturating-r1');
    assert.equal(entry.options.lazyRegInterval, 16);
    assert.equal(entry.options.r1Gamma, 10);
    assert.deepEqual(entry.options.pathLength, { weight: 2, interval: 4, decay: 0.01, batchShrink: 2 });
    assert.equal(entry.profiles.paper['resolution'], 256);
    assert.equal(entry.profiles.cpu['resolution'], 64);
  });

  it('generates [N, R, R, 5] and scores [N] at two resolutions (16², 32²)', () => {
    for (const resolution of [16, 32]) {
      const { generator: g, discriminator: d } = buildStyleGan2({ ...TINY, resolution }, 1);
      tf.tidy(() => {
        const images = g.generate(latents(1, 4, g.latentDim));
        assert.deepEqual(images.shape, [4, resolution, resolution, GAN_CHANNELS]);
        assert.deepEqual(d.score(images).shape, [4]);
        assert.deepEqual(d.score(images.slice(0, 2)).shape, [2]);
        const values = images.dataSync();
        assert.ok(values.every(Number.isFinite));
      });
      assert.equal(g.numStyleLayers, 2 * Math.log2(resolution) - 2);
      g.dispose();
      d.dispose();
    }
  });

  it('names its variables by block and layer', () => {
    const { generator: g, discriminator: d } = buildStyleGan2(TINY, 1);
    after(() => [g, d].forEach((m) => m.dispose()));
    for (const name of [
      'mapping/fc0/kernel',
      'mapping/fc1/bias',
      'mapping/w_avg',
      'synthesis/b4/const',
      'synthesis/b4/conv1/kernel',
      'synthesis/b4/conv1/affine/bias',
      'synthesis/b8/conv0/noise_strength',
      'synthesis/b16/torgb/kernel',
    ]) {
      assert.ok(name in g.variables, name);
    }
    for (const name of [
      'b16/fromrgb/kernel',
      'b16/skip/kernel',
      'b8/conv1/bias',
      'b4/conv/kernel',
      'b4/out/bias',
    ]) {
      assert.ok(name in d.variables, name);
    }
    assert.ok(!('b8/fromrgb/kernel' in d.variables) && !('b16/skip/bias' in d.variables));
    assert.deepEqual(g.variables['synthesis/b16/conv0/kernel']!.shape, [3, 3, 32, 16]);
    assert.deepEqual(d.variables['b4/conv/kernel']!.shape, [3, 3, 33, 32]);
  });

  it('skip architecture: the image is the sum of every toRGB output upsampled to full size', () => {
    const { generator: g, discriminator: d } = buildStyleGan2({ ...TINY, resolution: 32 }, 2);
    d.dispose();
    tf.tidy(() => {
      const ws = g.mapLatents(latents(2, 2, g.latentDim));
      const parts: [number, tf.Tensor4D][] = [];
      const image = g.synthesize(ws, { onToRgb: (r, rgb) => parts.push([r, tf.keep(rgb)]) });
      assert.deepEqual(
        parts.map(([r]) => r),
        [4, 8, 16, 32],
      );
      let sum = tf.zeros(image.shape) as tf.Tensor4D;
      for (const [r, rgb] of parts) {
        let up = rgb;
        for (let s = r; s < 32; s *= 2) up = upsample2d(up);
        sum = tf.add(sum, up);
      }
      // ... through the output floor at black.
      const floored = blackFloor(sum, TINY.blackFloorSharpness);
      assert.ok(maxAbsDiff(image.dataSync(), floored.dataSync()) < 1e-4);
      parts.forEach(([, t]) => t.dispose());
    });
    g.dispose();
  });

  it('truncation: ψ = 0 gives the same image for any z; ψ = 1 is the untruncated output', () => {
    const { generator: g, discriminator: d } = buildStyleGan2(TINY, 3);
    d.dispose();
    after(() => g.dispose());
    tf.tidy(() => {
      // Give the tracked w̄ a value (training-mode mapping calls update it).
      g.mapLatents(latents(9, 8, g.latentDim), { training: true });
      const z = latents(3, 4, g.latentDim);
      const zero = g.generate(z, { truncationPsi: 0 }).dataSync();
      const size = zero.length / 4;
      for (let i = 1; i < 4; i++) {
        assert.deepEqual(zero.slice(i * size, (i + 1) * size), zero.slice(0, size));
      }
      const other = g.generate(latents(4, 4, g.latentDim), { truncationPsi: 0 }).dataSync();
      assert.deepEqual(other, zero);
      assert.deepEqual(g.generate(z, { truncationPsi: 1 }).dataSync(), g.generate(z).dataSync());
      assert.notDeepEqual(g.generate(z, { truncationPsi: 0.5 }).dataSync(), g.generate(z).dataSync());
      // An explicit averageLatent wins over the tracked one; the cutoff leaves later layers untouched.
      const avg = tf.zeros([g.wDim]) as tf.Tensor1D;
      const ws = g.mapLatents(z, { truncationPsi: 0, averageLatent: avg, truncationCutoff: 2 });
      const untruncated = g.mapLatents(z);
      assert.ok(
        tf
          .slice(ws, [0, 0, 0], [-1, 2, -1])
          .dataSync()
          .every((v) => v === 0),
      );
      assert.deepEqual(
        tf.slice(ws, [0, 2, 0], [-1, -1, -1]).dataSync(),
        tf.slice(untruncated, [0, 2, 0], [-1, -1, -1]).dataSync(),
      );
    });
  });

  it('is deterministic for a seed: same z and noise seed, same images; other noise, other images', () => {
    const a = buildStyleGan2(TINY, 5);
    const b = buildStyleGan2(TINY, 5);
    after(() =>
      [a, b].forEach(({ generator, discriminator }) =>
        [generator, discriminator].forEach((m) => m.dispose()),
      ),
    );
    tf.tidy(() => {
      const z = latents(5, 3, a.generator.latentDim);
      // Make the noise matter (noise strengths start at 0).
      for (const [name, v] of Object.entries(a.generator.variables)) {
        if (name.endsWith('noise_strength')) v.assign(tf.scalar(0.5));
        if (name.endsWith('noise_strength')) b.generator.variables[name]!.assign(tf.scalar(0.5));
      }
      const x1 = a.generator.generate(z, { noiseSeed: 11 }).dataSync();
      assert.deepEqual(b.generator.generate(z, { noiseSeed: 11 }).dataSync(), x1);
      assert.deepEqual(a.generator.generate(z, { noiseSeed: 11 }).dataSync(), x1);
      assert.notDeepEqual(a.generator.generate(z, { noiseSeed: 12 }).dataSync(), x1);
      assert.deepEqual(a.generator.generate(z).dataSync(), b.generator.generate(z).dataSync());
    });
    const other = buildStyleGan2(TINY, 6);
    assert.notDeepEqual(
      snapshot(other.generator).get('synthesis/b8/conv1/kernel'),
      snapshot(a.generator).get('synthesis/b8/conv1/kernel'),
    );
    other.generator.dispose();
    other.discriminator.dispose();
  });

  it('style mixing takes layers from the crossover on from the second latents', () => {
    const { generator: g, discriminator: d } = buildStyleGan2(TINY, 7);
    d.dispose();
    after(() => g.dispose());
    tf.tidy(() => {
      const z1 = latents(1, 2, g.latentDim);
      const z2 = latents(2, 2, g.latentDim);
      const mixed = g.mapLatents(z1, { styleMixing: { latents: z2, crossover: 2 } });
      const w1 = g.mapLatents(z1);
      const w2 = g.mapLatents(z2);
      const n = g.numStyleLayers;
      assert.deepEqual(
        tf.slice(mixed, [0, 0, 0], [-1, 2, -1]).dataSync(),
        tf.slice(w1, [0, 0, 0], [-1, 2, -1]).dataSync(),
      );
      assert.deepEqual(
        tf.slice(mixed, [0, 2, 0], [-1, n - 2, -1]).dataSync(),
        tf.slice(w2, [0, 2, 0], [-1, n - 2, -1]).dataSync(),
      );
    });
  });

  it('a training step (non-saturating + R1, Adam) changes G and D, with no tensors left behind', () => {
    const { generator: g, discriminator: d } = buildStyleGan2(TINY, 8);
    const optimizers = { g: tf.train.adam(0.002, 0, 0.99, 1e-8), d: tf.train.adam(0.002, 0, 0.99, 1e-8) };
    const reals = realBatch(1, 4, TINY.resolution);
    const [g0, d0] = [snapshot(g), snapshot(d)];
    localGanStep(g, d, optimizers, reals, 1, 10); // creates the optimizers' slots
    const tensors = tf.memory().numTensors;
    const losses = [2, 3].map((step) =>
      localGanStep(g, d, optimizers, reals, step, step === 2 ? 10 : undefined),
    );
    assert.equal(tf.memory().numTensors, tensors);
    for (const { dLoss, gLoss } of losses) assert.ok(Number.isFinite(dLoss) && Number.isFinite(gLoss));
    assert.ok(losses[0]!.r1! > 0);
    const changedG = changedVariables(g0, snapshot(g));
    const changedD = changedVariables(d0, snapshot(d));
    // Every D weight trains; in G everything except the tracked w̄, which only training-mode mapping moves.
    assert.deepEqual(changedD.sort(), Object.keys(d.variables).sort());
    assert.ok(changedG.includes('synthesis/b16/conv1/kernel') && changedG.includes('mapping/fc0/kernel'));
    assert.ok(changedG.includes('synthesis/b8/conv0/noise_strength') && changedG.includes('mapping/w_avg'));
    reals.dispose();
    optimizers.g.dispose();
    optimizers.d.dispose();
    g.dispose();
    d.dispose();
  });

  it('R1 and path length: gradients of gradients through D and G on wasm, finite and non-zero', () => {
    const { generator: g, discriminator: d } = buildStyleGan2(TINY, 9);
    after(() => [g, d].forEach((m) => m.dispose()));
    const reals = realBatch(2, 4, TINY.resolution);
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const r1 = tf.variableGrads(() => {
        const gradient = tf.grad((x: tf.Tensor) => tf.sum(d.score(x as tf.Tensor4D)))(reals);
        return tf.mean(tf.sum(tf.square(gradient), [1, 2, 3])) as tf.Scalar;
      }, Object.values(d.variables));
      const norms = Object.values(r1.grads).map((grad) => tf.norm(grad).dataSync()[0]!);
      assert.ok(norms.every(Number.isFinite) && norms.some((v) => v > 0));
      // The path-length penalty: ‖∇_w (G(w)·y)‖ differentiated w.r.t. G's weights.
      const ws = g.mapLatents(latents(3, 2, g.latentDim));
      const y = tf.randomNormal([2, TINY.resolution, TINY.resolution, GAN_CHANNELS], 0, 1, 'float32', 3);
      const pl = tf.variableGrads(
        () => {
          const gw = tf.grad((w: tf.Tensor) =>
            tf.sum(tf.mul(g.synthesize(w as tf.Tensor3D, { noiseSeed: 1 }), y)),
          )(ws);
          return tf.mean(tf.sqrt(tf.mean(tf.sum(tf.square(gw), 2), 1))) as tf.Scalar;
        },
        Object.values(g.variables).filter((v) => !v.name.includes('mapping')),
      );
      const plNorms = Object.values(pl.grads).map((grad) => tf.norm(grad).dataSync()[0]!);
      assert.ok(plNorms.every(Number.isFinite) && plNorms.some((v) => v > 0));
    });
    assert.equal(tf.memory().numTensors, before);
    reals.dispose();
  });

  it('R1 gradients through D on wasm equal those on the reference cpu backend', async () => {
    // Small (the cpu backend is slow): 8², 8 maps.
    const config = { ...TINY, resolution: 8, channelBase: 64, channelMax: 8 };
    const { generator: g, discriminator: d } = buildStyleGan2(config, 12);
    g.dispose();
    after(() => d.dispose());
    const r1Grads = (): Map<string, Float32Array> => {
      const reals = realBatch(3, 4, config.resolution);
      const { value, grads } = tf.variableGrads(() => {
        const gradient = tf.grad((x: tf.Tensor) => tf.sum(d.score(x as tf.Tensor4D)))(reals);
        return tf.mean(tf.sum(tf.square(gradient), [1, 2, 3])) as tf.Scalar;
      }, Object.values(d.variables));
      const result = new Map(
        Object.entries(grads).map(([name, grad]) => [name, grad.dataSync() as Float32Array]),
      );
      tf.dispose([reals, value, ...Object.values(grads)]);
      return result;
    };
    const onWasm = r1Grads();
    await tf.setBackend('cpu');
    try {
      const onCpu = r1Grads();
      for (const [name, grad] of onWasm) {
        const scale = Math.max(1e-6, ...Array.from(onCpu.get(name)!, Math.abs));
        assert.ok(maxAbsDiff(grad, onCpu.get(name)!) <= 1e-3 * scale, name);
      }
    } finally {
      await tf.setBackend('wasm');
    }
  });

  it('saves to a weights blob and loads into a fresh generator that samples the same images', () => {
    const { generator: g, discriminator: d } = buildStyleGan2(TINY, 10);
    d.dispose();
    tf.tidy(() => {
      g.mapLatents(latents(5, 8, g.latentDim), { training: true });
      for (const [name, v] of Object.entries(g.variables)) {
        if (name.endsWith('noise_strength')) v.assign(tf.scalar(0.3));
      }
    });
    const blob = encodeWeights(variablesToWeights(g.variables), { architecture: g.architecture });
    const loaded = loadGenerator(blob);
    tf.tidy(() => {
      const z = latents(6, 3, g.latentDim);
      for (const options of [{}, { noiseSeed: 4 }, { truncationPsi: 0.7 }]) {
        assert.deepEqual(loaded.generate(z, options).dataSync(), g.generate(z, options).dataSync());
      }
    });
    g.dispose();
    loaded.dispose();
  });

  it('reports parameter counts per profile', () => {
    for (const profile of ['tiny', 'cpu'] as const) {
      const { generator: g, discriminator: d } = buildStyleGan2(STYLEGAN2_PROFILES[profile], 0);
      const counts = { G: countParameters(g.variables), D: countParameters(d.variables) };
      assert.ok(counts.G > 0 && counts.D > 0);
      g.dispose();
      d.dispose();
    }
  });
});
