import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { encodeWeights, variablesToWeights } from '../../weights/index.js';
import { ganArchitecture, loadGenerator } from '../gan/registry.js';
import { GAN_CHANNELS } from '../gan/types.js';
import {
  changedVariables,
  latents,
  localGanStep,
  maxAbsDiff,
  realBatch,
  snapshot,
  useWasm,
} from '../stylegan2/stylegan-spec-helpers.js';
import { STYLEGAN3_PROFILES, buildStyleGan3, type StyleGan3Config } from './index.js';

const TINY: StyleGan3Config = STYLEGAN3_PROFILES.tiny;

describe('StyleGAN 3', () => {
  before(useWasm);

  it('registers as stylegan3: non-saturating + lazy R1, no path length, no style mixing', () => {
    const entry = ganArchitecture('stylegan3');
    assert.equal(entry.loss, 'nonsaturating-r1');
    assert.equal(entry.options.lazyRegInterval, 16);
    assert.equal(entry.options.pathLength, undefined);
    assert.equal(entry.options.styleMixingProbability, 0);
    assert.equal(entry.profiles.paper['numLayers'], 14);
    assert.equal(entry.profiles.cpu['resolution'], 64);
  });

  it('generates [N, R, R, 5] and scores [N] at two resolutions (16², 32²)', () => {
    for (const resolution of [16, 32]) {
      const { generator: g, discriminator: d } = buildStyleGan3({ ...TINY, resolution }, 1);
      tf.tidy(() => {
        const images = g.generate(latents(1, 4, g.latentDim));
        assert.deepEqual(images.shape, [4, resolution, resolution, GAN_CHANNELS]);
        assert.ok(images.dataSync().every(Number.isFinite));
        assert.deepEqual(d.score(images).shape, [4]);
      });
      assert.equal(g.numStyleLayers, TINY.numLayers + 2);
      g.dispose();
      d.dispose();
    }
  });

  it('names its layers after the plan and keeps no noise inputs', () => {
    const { generator: g, discriminator: d } = buildStyleGan3(TINY, 1);
    after(() => [g, d].forEach((m) => m.dispose()));
    const names = Object.keys(g.variables);
    for (const name of [
      'mapping/fc1/kernel',
      'mapping/w_avg',
      'synthesis/input/affine/kernel',
      'synthesis/input/weight',
      'synthesis/L0_36_16/kernel',
      'synthesis/L0_36_16/affine/bias',
      'synthesis/L0_36_16/magnitude_ema',
      'synthesis/L4_torgb/kernel',
    ]) {
      assert.ok(names.includes(name), name);
    }
    assert.ok(!names.some((name) => name.includes('noise')));
    assert.deepEqual(g.variables['synthesis/L4_torgb/kernel']!.shape, [1, 1, 16, GAN_CHANNELS]);
    // The noise seed changes nothing: there are no noise inputs.
    tf.tidy(() => {
      const z = latents(2, 2, g.latentDim);
      assert.deepEqual(
        g.generate(z, { noiseSeed: 1 }).dataSync(),
        g.generate(z, { noiseSeed: 2 }).dataSync(),
      );
    });
  });

  it('truncation: ψ = 0 gives the same image for any z; ψ = 1 is the untruncated output', () => {
    const { generator: g, discriminator: d } = buildStyleGan3(TINY, 3);
    d.dispose();
    after(() => g.dispose());
    tf.tidy(() => {
      g.mapLatents(latents(9, 8, g.latentDim), { training: true });
      const z = latents(3, 3, g.latentDim);
      const zero = g.generate(z, { truncationPsi: 0 }).dataSync();
      const size = zero.length / 3;
      for (let i = 1; i < 3; i++) assert.deepEqual(zero.slice(i * size, (i + 1) * size), zero.slice(0, size));
      assert.deepEqual(g.generate(latents(4, 3, g.latentDim), { truncationPsi: 0 }).dataSync(), zero);
      assert.deepEqual(g.generate(z, { truncationPsi: 1 }).dataSync(), g.generate(z).dataSync());
      assert.notDeepEqual(g.generate(z, { truncationPsi: 0.5 }).dataSync(), g.generate(z).dataSync());
    });
  });

  it('is deterministic for a seed; Fourier frequencies come from the config, not the model seed', () => {
    const a = buildStyleGan3(TINY, 5);
    const b = buildStyleGan3(TINY, 5);
    const c = buildStyleGan3(TINY, 6);
    after(() =>
      [a, b, c].forEach(({ generator, discriminator }) =>
        [generator, discriminator].forEach((m) => m.dispose()),
      ),
    );
    tf.tidy(() => {
      const z = latents(5, 2, TINY.zDim);
      assert.deepEqual(a.generator.generate(z).dataSync(), b.generator.generate(z).dataSync());
      assert.notDeepEqual(a.generator.generate(z).dataSync(), c.generator.generate(z).dataSync());
    });
    assert.deepEqual(a.generator.synthesis.input.freqs, c.generator.synthesis.input.freqs);
    const other = buildStyleGan3({ ...TINY, fourierSeed: 1 }, 5);
    assert.notDeepEqual(other.generator.synthesis.input.freqs, a.generator.synthesis.input.freqs);
    other.generator.dispose();
    other.discriminator.dispose();
  });

  it('tracks the input magnitudes only in training mode', () => {
    const { generator: g, discriminator: d } = buildStyleGan3(TINY, 7);
    d.dispose();
    after(() => g.dispose());
    const emas = () =>
      Object.entries(g.variables)
        .filter(([name]) => name.endsWith('magnitude_ema'))
        .map(([, v]) => v.dataSync()[0]!);
    assert.ok(emas().every((v) => v === 1));
    tf.tidy(() => g.generate(latents(1, 4, g.latentDim)));
    assert.ok(emas().every((v) => v === 1));
    tf.tidy(() => g.generate(latents(1, 4, g.latentDim), { training: true }));
    const after1 = emas();
    assert.ok(after1.every((v) => v !== 1 && Number.isFinite(v) && v > 0));
    // β = 0.5^(4/20000): one step moves the EMA by (1 − β) of the way.
    assert.ok(after1.every((v) => Math.abs(v - 1) < 0.01));
  });

  it('a training step (non-saturating + R1, Adam) changes G and D, with no tensors left behind', () => {
    const { generator: g, discriminator: d } = buildStyleGan3(TINY, 8);
    const optimizers = { g: tf.train.adam(0.0025, 0, 0.99, 1e-8), d: tf.train.adam(0.002, 0, 0.99, 1e-8) };
    const reals = realBatch(1, 4, TINY.resolution);
    const [g0, d0] = [snapshot(g), snapshot(d)];
    localGanStep(g, d, optimizers, reals, 1, 8); // optimizer slots and cached FIR filters
    const tensors = tf.memory().numTensors;
    const losses = [2, 3].map((step) =>
      localGanStep(g, d, optimizers, reals, step, step === 2 ? 8 : undefined),
    );
    assert.equal(tf.memory().numTensors, tensors);
    for (const { dLoss, gLoss } of losses) assert.ok(Number.isFinite(dLoss) && Number.isFinite(gLoss));
    assert.ok(losses[0]!.r1! > 0);
    const changedG = changedVariables(g0, snapshot(g));
    assert.deepEqual(changedVariables(d0, snapshot(d)).sort(), Object.keys(d.variables).sort());
    for (const name of [
      'mapping/fc0/kernel',
      'synthesis/input/weight',
      'synthesis/input/affine/kernel',
      'synthesis/L1_36_16/kernel',
      'synthesis/L4_torgb/bias',
      'synthesis/L3_16_16/magnitude_ema',
    ]) {
      assert.ok(changedG.includes(name), name);
    }
    reals.dispose();
    optimizers.g.dispose();
    optimizers.d.dispose();
    g.dispose();
    d.dispose();
  });

  it('R1 through its discriminator works on wasm (gradient of a gradient)', () => {
    const { generator: g, discriminator: d } = buildStyleGan3(TINY, 9);
    after(() => [g, d].forEach((m) => m.dispose()));
    const reals = realBatch(2, 4, TINY.resolution);
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        const gradient = tf.grad((x: tf.Tensor) => tf.sum(d.score(x as tf.Tensor4D)))(reals);
        return tf.mean(tf.sum(tf.square(gradient), [1, 2, 3])) as tf.Scalar;
      }, Object.values(d.variables));
      const norms = Object.values(grads).map((grad) => tf.norm(grad).dataSync()[0]!);
      assert.ok(norms.every(Number.isFinite) && norms.some((v) => v > 0));
    });
    reals.dispose();
  });

  it('saves to a weights blob and loads into a fresh generator that samples the same images', () => {
    const { generator: g, discriminator: d } = buildStyleGan3(TINY, 10);
    d.dispose();
    tf.tidy(() => g.generate(latents(5, 8, g.latentDim), { training: true })); // move w̄ and the magnitude EMAs
    const blob = encodeWeights(variablesToWeights(g.variables), { architecture: g.architecture });
    const loaded = loadGenerator(blob);
    tf.tidy(() => {
      const z = latents(6, 3, g.latentDim);
      for (const options of [{}, { truncationPsi: 0.7 }]) {
        const diff = maxAbsDiff(loaded.generate(z, options).dataSync(), g.generate(z, options).dataSync());
        assert.equal(diff, 0);
      }
    });
    g.dispose();
    loaded.dispose();
  });
});
