import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { decodeWeights, encodeWeights, variablesToWeights } from '../../weights/index.js';
import { ganArchitecture, loadGenerator } from '../gan/registry.js';
import { GAN_CHANNELS } from '../gan/types.js';
import {
  changed,
  latents,
  localGanStep,
  maxAbsDiff,
  realBatch,
  snapshot,
  useWasm,
} from '../progan/gan-spec-helpers.js';
import {
  STYLEGAN1_PROFILES,
  adaIn,
  buildStyleGan1,
  buildStyleGan1Generator,
  styleLayerCount,
  type StyleGan1Config,
  type StyleGan1Generator,
} from './index.js';

const TINY: StyleGan1Config = STYLEGAN1_PROFILES.tiny;
const TINY16: StyleGan1Config = { ...TINY, resolution: 16, upsampling: 'bilinear' };

/** Gives every noise strength a value, as training would (they start at zero). */
function setNoiseStrengths(g: StyleGan1Generator, value: (name: string) => tf.Tensor): void {
  tf.tidy(() => {
    for (const [name, v] of Object.entries(g.variables)) {
      if (name.endsWith('/noise_strength')) v.assign(value(name));
    }
  });
}

/** Per sample and channel mean and std over H, W: [N, C] each. */
function channelStats(x: tf.Tensor4D): { mean: tf.Tensor; std: tf.Tensor } {
  const { mean, variance } = tf.moments(x, [1, 2]);
  return { mean, std: tf.sqrt(variance) };
}

describe('StyleGAN 1', () => {
  before(useWasm);

  it('maps z to ws and images, and images to scores, at two resolutions with both upsamplings', () => {
    for (const config of [TINY16, TINY]) {
      const { generator: g, discriminator: d } = buildStyleGan1(config, 1);
      after(() => [g, d].forEach((m) => m.dispose()));
      const layers = styleLayerCount(config.resolution);
      assert.equal(g.numStyleLayers, layers);
      assert.equal(g.wDim, config.wDim);
      tf.tidy(() => {
        const z = latents(1, 4, config.latentDim);
        const ws = g.mapLatents(z);
        assert.deepEqual(ws.shape, [4, layers, config.wDim]);
        const images = g.synthesize(ws);
        assert.deepEqual(images.shape, [4, config.resolution, config.resolution, GAN_CHANNELS]);
        assert.deepEqual(g.generate(z).dataSync(), images.dataSync(), 'generate = synthesize ∘ mapLatents');
        assert.ok(images.dataSync().every(Number.isFinite));
        assert.deepEqual(d.score(images).shape, [4]);
      });
    }
    assert.equal(styleLayerCount(256), 14);
  });

  it('names its variables; the mapping runs at lr multiplier 0.01 and w_avg is not trainable', () => {
    const g = buildStyleGan1Generator(TINY, 1);
    after(() => g.dispose());
    const shapes = Object.fromEntries(Object.entries(g.variables).map(([name, v]) => [name, v.shape]));
    assert.deepEqual(shapes['mapping/dense0/kernel'], [16, 16]);
    assert.deepEqual(shapes['mapping/w_avg'], [16]);
    assert.deepEqual(shapes['synthesis/4x4/const'], [1, 4, 4, 16]);
    assert.deepEqual(shapes['synthesis/4x4/layer0/style/kernel'], [16, 32]);
    assert.deepEqual(shapes['synthesis/8x8/layer0/conv/kernel'], [3, 3, 16, 16]);
    assert.deepEqual(shapes['synthesis/32x32/layer0/conv/kernel'], [3, 3, 8, 4]);
    assert.deepEqual(shapes['synthesis/32x32/layer1/noise_strength'], [4]);
    assert.deepEqual(shapes['synthesis/torgb/kernel'], [1, 1, 4, 5]);
    assert.equal(shapes['synthesis/4x4/layer0/conv/kernel'], undefined, 'the constant layer has no conv');
    assert.equal(g.variables['mapping/w_avg']!.trainable, false);
    assert.equal(g.wAvg, g.variables['mapping/w_avg']);
    assert.ok(
      Object.values(g.variables)
        .filter((v) => v !== g.wAvg)
        .every((v) => v.trainable),
    );
    // Equalized lr with multiplier 0.01: stored weights ~N(0, 100²).
    const std = tf.tidy(
      () => tf.moments(g.variables['mapping/dense1/kernel']!).variance.sqrt().dataSync()[0]!,
    );
    assert.ok(std > 60 && std < 140, `mapping weight std ${std}`);
    assert.equal(g.architecture.name, 'stylegan1');
  });

  it('AdaIN gives every channel the style mean and std', () => {
    tf.tidy(() => {
      const x = tf.add(tf.mul(tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 1), 5), 3) as tf.Tensor4D;
      const scale = tf.tensor2d([0.5, 2, 1.5, 3, 0.25, 1], [2, 3]);
      const bias = tf.tensor2d([1, -2, 0, 0.5, 0.75, -1], [2, 3]);
      const { mean, std } = channelStats(adaIn(x, scale, bias));
      assert.ok(maxAbsDiff(mean, bias) < 1e-4);
      assert.ok(maxAbsDiff(std, scale) < 1e-4);
    });
    // In the network: a layer's output statistics are its affine's (1 + ys, yb) of that layer's w.
    const g = buildStyleGan1Generator(TINY, 2);
    after(() => g.dispose());
    tf.tidy(() => {
      const ws = g.mapLatents(latents(2, 2, TINY.latentDim));
      const { activations } = g.synthesizeTrace(ws, { noiseSeed: 1 });
      const layer = 3; // 8×8, second conv: 16 channels
      const w = tf.reshape(tf.slice(ws, [0, layer, 0], [2, 1, TINY.wDim]), [2, TINY.wDim]);
      const kernel = g.variables['synthesis/8x8/layer1/style/kernel']!;
      const styleBias = g.variables['synthesis/8x8/layer1/style/bias']!;
      const style = tf.add(tf.matMul(w, tf.mul(kernel, 1 / Math.sqrt(TINY.wDim))), styleBias);
      const [ys, yb] = tf.split(style, 2, 1);
      const { mean, std } = channelStats(activations[layer]!);
      assert.ok(maxAbsDiff(mean, yb!) < 1e-4);
      assert.ok(maxAbsDiff(std, tf.abs(tf.add(ys!, 1))) < 1e-3);
    });
  });

  it('adds noise only where the strengths are not zero', () => {
    const g = buildStyleGan1Generator(TINY, 3);
    after(() => g.dispose());
    const z = latents(3, 2, TINY.latentDim);
    after(() => z.dispose());
    tf.tidy(() => {
      // Strengths start at zero: the noise seed changes nothing.
      assert.equal(maxAbsDiff(g.generate(z, { noiseSeed: 1 }), g.generate(z, { noiseSeed: 2 })), 0);
    });
    // Layer 4 (16×16, first conv: 8 channels), channel 5 only.
    const layer = 4;
    tf.tidy(() =>
      g.variables['synthesis/16x16/layer0/noise_strength']!.assign(tf.oneHot([5], 8).reshape([8]).mul(0.5)),
    );
    tf.tidy(() => {
      const ws = g.mapLatents(z);
      const a = g.synthesizeTrace(ws, { noiseSeed: 1 });
      const b = g.synthesizeTrace(ws, { noiseSeed: 2 });
      for (let i = 0; i < layer; i++)
        assert.equal(maxAbsDiff(a.activations[i]!, b.activations[i]!), 0, `layer ${i}`);
      const perChannel = tf
        .max(tf.abs(tf.sub(a.activations[layer]!, b.activations[layer]!)), [0, 1, 2])
        .arraySync();
      assert.deepEqual(
        (perChannel as number[]).map((d) => d > 0),
        [false, false, false, false, false, true, false, false],
      );
      assert.ok(maxAbsDiff(a.images, b.images) > 1e-4);
      // The same seed is the same noise.
      assert.equal(maxAbsDiff(a.images, g.synthesize(ws, { noiseSeed: 1 })), 0);
    });
  });

  it('noiseMaxResolution: noise inputs only up to that side; the same model otherwise', () => {
    const all = buildStyleGan1Generator(TINY, 5);
    const capped = buildStyleGan1Generator({ ...TINY, noiseMaxResolution: 16 }, 5);
    after(() => [all, capped].forEach((g) => g.dispose()));
    const noiseNames = (g: typeof all) =>
      Object.keys(g.variables).filter((n) => n.endsWith('/noise_strength'));
    assert.deepEqual(
      noiseNames(capped),
      noiseNames(all).filter((n) => !n.startsWith('synthesis/32x32/')),
    );
    assert.equal(noiseNames(all).filter((n) => n.startsWith('synthesis/32x32/')).length, 2);
    assert.deepEqual(
      Object.keys(capped.variables).filter((n) => !n.endsWith('/noise_strength')),
      Object.keys(all.variables).filter((n) => !n.endsWith('/noise_strength')),
    );
    setNoiseStrengths(capped, (name) => tf.fill(capped.variables[name]!.shape, 0.5));
    const z = latents(5, 2, TINY.latentDim);
    after(() => z.dispose());
    tf.tidy(() => {
      const ws = capped.mapLatents(z);
      const a = capped.synthesizeTrace(ws, { noiseSeed: 1 });
      const b = capped.synthesizeTrace(ws, { noiseSeed: 2 });
      // The 16² layers still take noise, and it reaches the images.
      assert.ok(maxAbsDiff(a.activations[5]!, b.activations[5]!) > 1e-4);
      assert.ok(maxAbsDiff(a.images, b.images) > 1e-4);
    });
    assert.throws(
      () => buildStyleGan1Generator({ ...TINY, noiseMaxResolution: 12 }, 1),
      /noiseMaxResolution must be a power of 2 ≥ 4, got 12/,
    );
  });

  it('style mixing: layers from the crossover on take the second latent', () => {
    const g = buildStyleGan1Generator(TINY, 4);
    after(() => g.dispose());
    tf.tidy(() => {
      const z1 = latents(4, 3, TINY.latentDim);
      const z2 = latents(5, 3, TINY.latentDim);
      const crossover = 3;
      const mixed = g.mapLatents(z1, { styleMixing: { latents: z2, crossover } });
      const w1 = g.mapping(z1);
      const w2 = g.mapping(z2);
      for (let i = 0; i < g.numStyleLayers; i++) {
        const wi = tf.reshape(tf.slice(mixed, [0, i, 0], [3, 1, TINY.wDim]), [3, TINY.wDim]);
        assert.equal(maxAbsDiff(wi, i < crossover ? w1 : w2), 0, `layer ${i}`);
      }
      const plain = g.synthesizeTrace(g.mapLatents(z1), { noiseSeed: 1 });
      const mixedTrace = g.synthesizeTrace(mixed, { noiseSeed: 1 });
      const other = g.synthesizeTrace(g.mapLatents(z2), { noiseSeed: 1 });
      for (let i = 0; i < crossover; i++) {
        assert.equal(maxAbsDiff(mixedTrace.activations[i]!, plain.activations[i]!), 0, `layer ${i}`);
      }
      for (let i = crossover; i < g.numStyleLayers; i++) {
        assert.ok(maxAbsDiff(mixedTrace.activations[i]!, plain.activations[i]!) > 1e-3, `layer ${i}`);
      }
      // From the crossover on, the per-channel statistics are z2's styles (AdaIN sets them).
      const last = g.numStyleLayers - 1;
      const stats = (t: tf.Tensor4D) => channelStats(t).mean;
      assert.ok(maxAbsDiff(stats(mixedTrace.activations[last]!), stats(other.activations[last]!)) < 1e-4);
      assert.ok(maxAbsDiff(stats(plain.activations[last]!), stats(other.activations[last]!)) > 1e-3);
      // crossover = numStyleLayers: no mixing.
      const none = g.mapLatents(z1, { styleMixing: { latents: z2, crossover: g.numStyleLayers } });
      assert.equal(maxAbsDiff(none, g.mapLatents(z1)), 0);
    });
  });

  it('tracks the average w in training mode only (β = 0.995, first latents only)', () => {
    const g = buildStyleGan1Generator(TINY, 5);
    after(() => g.dispose());
    tf.tidy(() => {
      const z = latents(6, 8, TINY.latentDim);
      const z2 = latents(7, 8, TINY.latentDim);
      g.mapLatents(z);
      assert.equal(tf.max(tf.abs(g.wAvg)).dataSync()[0], 0, 'eval mode leaves it');
      const batchMean = tf.mean(g.mapping(z), 0);
      g.mapLatents(z, { training: true, styleMixing: { latents: z2, crossover: 2 } });
      assert.ok(maxAbsDiff(g.wAvg, tf.mul(batchMean, 0.005)) < 1e-6);
      const previous = tf.clone(g.wAvg);
      g.mapLatents(z, { training: true });
      assert.ok(maxAbsDiff(g.wAvg, tf.add(tf.mul(previous, 0.995), tf.mul(batchMean, 0.005))) < 1e-6);
    });
  });

  it('truncation: psi 0 gives one image for any z (same noise), psi 1 the untruncated output', () => {
    const g = buildStyleGan1Generator(TINY, 6);
    after(() => g.dispose());
    setNoiseStrengths(g, (name) => tf.fill([g.variables[name]!.shape[0]!], 0.3));
    tf.tidy(() => {
      for (let i = 0; i < 5; i++) g.mapLatents(latents(10 + i, 8, TINY.latentDim), { training: true });
      const za = latents(8, 2, TINY.latentDim);
      const zb = latents(9, 2, TINY.latentDim);
      const a0 = g.generate(za, { truncationPsi: 0, noiseSeed: 3 });
      assert.equal(maxAbsDiff(a0, g.generate(zb, { truncationPsi: 0, noiseSeed: 3 })), 0);
      assert.ok(
        maxAbsDiff(a0, g.generate(za, { truncationPsi: 0, noiseSeed: 4 })) > 1e-4,
        'noise still acts',
      );
      assert.equal(
        maxAbsDiff(g.generate(za, { truncationPsi: 1, noiseSeed: 3 }), g.generate(za, { noiseSeed: 3 })),
        0,
      );
      // psi 0 synthesizes the tracked average w in every layer; an explicit average overrides it.
      const fromAverage = g.synthesize(
        tf.mul(tf.reshape(g.wAvg, [1, 1, -1]), tf.ones([2, g.numStyleLayers, 1])),
        {
          noiseSeed: 3,
        },
      );
      assert.ok(maxAbsDiff(a0, fromAverage) < 1e-5);
      const average = tf.fill([TINY.wDim], 0.1) as tf.Tensor1D;
      const ws = g.mapLatents(za, { truncationPsi: 0.5, averageLatent: average, truncationCutoff: 2 });
      const plain = g.mapLatents(za);
      const expected = tf.concat(
        [
          tf.add(0.1, tf.mul(tf.sub(tf.slice(plain, [0, 0, 0], [2, 2, -1]), 0.1), 0.5)),
          tf.slice(plain, [0, 2, 0], [2, -1, -1]),
        ],
        1,
      );
      assert.ok(maxAbsDiff(ws, expected) < 1e-6);
    });
  });

  it('samples deterministically for a seed', () => {
    const [a, b] = [7, 7].map((seed) => buildStyleGan1Generator(TINY, seed));
    const c = buildStyleGan1Generator(TINY, 8);
    after(() => [a!, b!, c].forEach((m) => m.dispose()));
    assert.deepEqual(changed(snapshot(a!), snapshot(b!)), []);
    assert.ok(changed(snapshot(a!), snapshot(c)).length > 0);
    for (const g of [a!, b!]) setNoiseStrengths(g, (name) => tf.fill([g.variables[name]!.shape[0]!], 0.2));
    tf.tidy(() => {
      const z = latents(11, 3, TINY.latentDim);
      const options = { noiseSeed: 12, truncationPsi: 0.7 };
      assert.deepEqual(a!.generate(z, options).dataSync(), b!.generate(z, options).dataSync());
      assert.deepEqual(a!.generate(z, options).dataSync(), a!.generate(z, options).dataSync());
      // Without a seed: the constant noise, also reproducible.
      assert.deepEqual(a!.generate(z).dataSync(), b!.generate(z).dataSync());
    });
  });

  it('trains (non-saturating + R1, style mixing, noise): G and D change, w_avg is tracked, no leaks', () => {
    const { generator: g, discriminator: d } = buildStyleGan1(TINY16, 9);
    const optimizers = {
      g: tf.train.adam(0.002, 0, 0.99, 1e-8),
      d: tf.train.adam(0.002, 0, 0.99, 1e-8),
    };
    const reals = realBatch(8, 4, 16);
    const z2 = latents(99, 4, TINY16.latentDim);
    after(() => {
      [g, d].forEach((m) => m.dispose());
      optimizers.g.dispose();
      optimizers.d.dispose();
      tf.dispose([reals, z2]);
    });
    const [g0, d0] = [snapshot(g), snapshot(d)];
    const step = (seed: number) =>
      localGanStep(g, d, optimizers, reals, {
        loss: 'nonsaturating-r1',
        seed,
        generateOptions: () => ({
          training: true,
          noiseSeed: seed,
          styleMixing: { latents: z2, crossover: 1 + (seed % (g.numStyleLayers - 1)) },
        }),
      });
    step(0);
    const tensors = tf.memory().numTensors;
    for (let i = 1; i <= 3; i++) {
      const losses = step(i);
      assert.ok(Number.isFinite(losses.d) && Number.isFinite(losses.g));
      assert.equal(tf.memory().numTensors, tensors, `step ${i}`);
    }
    assert.deepEqual(changed(g0, snapshot(g)).sort(), Object.keys(g.variables).sort());
    assert.deepEqual(changed(d0, snapshot(d)).sort(), Object.keys(d.variables).sort());
  });

  it('saves and loads: a weights blob (with w_avg) rebuilds a generator with the same samples', () => {
    const g = buildStyleGan1Generator(TINY, 10);
    after(() => g.dispose());
    tf.tidy(() => {
      for (const v of Object.values(g.variables)) v.assign(tf.add(v, 0.05));
    });
    const blob = encodeWeights(variablesToWeights(g.variables), { architecture: g.architecture });
    const { manifest } = decodeWeights(blob);
    assert.equal(manifest.architecture.name, 'stylegan1');
    assert.ok(manifest.tensors.some((t) => t.name === 'mapping/w_avg'));
    const loaded = loadGenerator(blob);
    after(() => loaded.dispose());
    tf.tidy(() => {
      const z = latents(13, 3, TINY.latentDim);
      const options = { noiseSeed: 5, truncationPsi: 0.7 };
      assert.deepEqual(loaded.generate(z, options).dataSync(), g.generate(z, options).dataSync());
    });
  });

  it('registers as stylegan1 with the non-saturating loss, R1 and style mixing 0.9', () => {
    const entry = ganArchitecture('stylegan1');
    assert.equal(entry.loss, 'nonsaturating-r1');
    assert.equal(entry.options.styleMixingProbability, 0.9);
    assert.equal(entry.options.r1Gamma, 10);
    assert.deepEqual(Object.keys(entry.profiles).sort(), ['cpu', 'cpu32', 'paper', 'tiny']);
  });
});
