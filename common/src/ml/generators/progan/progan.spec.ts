import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../../backend/index.js';
import { countParameters } from '../../layers/index.js';
import { decodeWeights, encodeWeights, variablesToWeights } from '../../weights/index.js';
import { minibatchStddev } from '../gan/layers.js';
import { wganGpDiscriminatorLoss } from '../gan/losses.js';
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
} from './gan-spec-helpers.js';
import {
  PROGAN_PROFILES,
  buildProGan,
  buildProGanDiscriminator,
  buildProGanGenerator,
  growthAt,
  levelFeatureMaps,
  type ProGanConfig,
} from './index.js';

const TINY: ProGanConfig = PROGAN_PROFILES.tiny;
const TINY16: ProGanConfig = { ...TINY, resolution: 16 };

/** Perturbs a variable in place (restored by the returned function). */
function perturb(variable: tf.Variable): () => void {
  const original = tf.clone(variable);
  tf.tidy(() => variable.assign(tf.add(variable, tf.randomNormal(variable.shape, 0, 1, 'float32', 5))));
  return () => {
    variable.assign(original);
    original.dispose();
  };
}

describe('Progressive GAN', () => {
  before(useWasm);

  it('maps z to full-size 5-channel images and images to one score each, at two resolutions and every level', () => {
    for (const config of [TINY16, TINY]) {
      const { generator: g, discriminator: d } = buildProGan(config, 1);
      after(() => [g, d].forEach((m) => m.dispose()));
      const levels = Math.log2(config.resolution) - 1;
      assert.equal(g.resolution, config.resolution);
      assert.equal(g.channels, GAN_CHANNELS);
      for (let level = 0; level < levels; level++) {
        for (const alpha of [0, 0.5, 1]) {
          if (level === 0 && alpha !== 1) continue;
          g.setGrowth({ level, alpha });
          d.setGrowth({ level, alpha });
          tf.tidy(() => {
            const images = g.generate(latents(level, 4, config.latentDim));
            assert.deepEqual(images.shape, [4, config.resolution, config.resolution, GAN_CHANNELS]);
            assert.deepEqual(d.score(images).shape, [4]);
            assert.deepEqual(d.prepareReals(images).shape, images.shape);
            assert.ok(images.dataSync().every(Number.isFinite));
          });
        }
      }
    }
  });

  it('names its variables by resolution with the paper widths', () => {
    assert.deepEqual(levelFeatureMaps(PROGAN_PROFILES.paper, 256), [512, 512, 512, 512, 256, 128, 64]);
    assert.deepEqual(levelFeatureMaps(PROGAN_PROFILES.cpu, 64), [64, 64, 64, 32, 16]);
    assert.deepEqual(levelFeatureMaps(TINY, 32), [16, 16, 8, 4]);
    const { generator: g, discriminator: d } = buildProGan(TINY, 1);
    after(() => [g, d].forEach((m) => m.dispose()));
    const shapes = (vars: Record<string, tf.Variable>) =>
      Object.fromEntries(Object.entries(vars).map(([name, v]) => [name, v.shape]));
    assert.deepEqual(shapes(g.variables), {
      '4x4/torgb/kernel': [1, 1, 16, 5],
      '4x4/torgb/bias': [5],
      '4x4/dense/kernel': [16, 16 * 16],
      '4x4/dense/bias': [16],
      '4x4/conv/kernel': [3, 3, 16, 16],
      '4x4/conv/bias': [16],
      '8x8/torgb/kernel': [1, 1, 16, 5],
      '8x8/torgb/bias': [5],
      '8x8/conv0/kernel': [3, 3, 16, 16],
      '8x8/conv0/bias': [16],
      '8x8/conv1/kernel': [3, 3, 16, 16],
      '8x8/conv1/bias': [16],
      '16x16/torgb/kernel': [1, 1, 8, 5],
      '16x16/torgb/bias': [5],
      '16x16/conv0/kernel': [3, 3, 16, 8],
      '16x16/conv0/bias': [8],
      '16x16/conv1/kernel': [3, 3, 8, 8],
      '16x16/conv1/bias': [8],
      '32x32/torgb/kernel': [1, 1, 4, 5],
      '32x32/torgb/bias': [5],
      '32x32/conv0/kernel': [3, 3, 8, 4],
      '32x32/conv0/bias': [4],
      '32x32/conv1/kernel': [3, 3, 4, 4],
      '32x32/conv1/bias': [4],
    });
    const dShapes = shapes(d.variables);
    // The minibatch stddev feature is the 4×4 conv's extra input channel.
    assert.deepEqual(dShapes['4x4/conv/kernel'], [3, 3, 16 + 1, 16]);
    assert.deepEqual(dShapes['4x4/dense/kernel'], [16 * 16, 16]);
    assert.deepEqual(dShapes['4x4/out/kernel'], [16, 1]);
    assert.deepEqual(dShapes['32x32/fromrgb/kernel'], [1, 1, 5, 4]);
    assert.deepEqual(dShapes['32x32/conv1/kernel'], [3, 3, 4, 8]);
    assert.equal(g.architecture.name, 'progan');
    assert.deepEqual(g.architecture.config, TINY);
  });

  it('grows on schedule: equal stabilise/fade phases, or the paper schedule in images', () => {
    // 32²: 4 levels, 7 phases of 100 steps.
    const at = (step: number) => growthAt({ kind: 'equal' }, 4, { step, totalSteps: 700, imagesSeen: 0 });
    assert.deepEqual(at(0), { level: 0, alpha: 1 });
    assert.deepEqual(at(99), { level: 0, alpha: 1 });
    assert.deepEqual(at(100), { level: 1, alpha: 0 });
    assert.deepEqual(at(150), { level: 1, alpha: 0.5 });
    assert.deepEqual(at(200), { level: 1, alpha: 1 });
    assert.deepEqual(at(325), { level: 2, alpha: 0.25 });
    assert.deepEqual(at(500), { level: 3, alpha: 0 });
    assert.deepEqual(at(699), { level: 3, alpha: 1 });
    const paper = { kind: 'images', stabiliseImages: 800_000, fadeImages: 800_000 } as const;
    const atImages = (imagesSeen: number) => growthAt(paper, 7, { step: 0, totalSteps: 1, imagesSeen });
    assert.deepEqual(atImages(0), { level: 0, alpha: 1 });
    assert.deepEqual(atImages(1_200_000), { level: 1, alpha: 0.5 });
    assert.deepEqual(atImages(2_400_000), { level: 2, alpha: 0 });
    assert.deepEqual(atImages(10_400_000), { level: 6, alpha: 1 });
    assert.deepEqual(atImages(1e9), { level: 6, alpha: 1 });

    const { generator: g, discriminator: d } = buildProGan(TINY, 1);
    after(() => [g, d].forEach((m) => m.dispose()));
    assert.deepEqual(g.growth, { level: 3, alpha: 1 }, 'built fully grown');
    const progress = { step: 150, totalSteps: 700, batchSize: 8, imagesSeen: 1200 };
    g.setProgress(progress);
    d.setProgress!(progress);
    assert.deepEqual(g.growth, { level: 1, alpha: 0.5 });
    assert.deepEqual(d.growth, { level: 1, alpha: 0.5 });
  });

  it('fades G in: alpha 0 is exactly the upsampled lower level, alpha 1 only the new level', () => {
    // The fade is a linear blend of the toRGB outputs, checked before the (nonlinear) output floor.
    const g = buildProGanGenerator({ ...TINY, blackFloorSharpness: 0 }, 2);
    after(() => g.dispose());
    const z = latents(3, 4, TINY.latentDim);
    after(() => z.dispose());
    const at = (level: number, alpha: number): tf.Tensor4D => {
      g.setGrowth({ level, alpha });
      return g.generate(z);
    };
    tf.tidy(() => {
      const lower = at(1, 1);
      const faded0 = at(2, 0);
      assert.deepEqual(faded0.dataSync(), lower.dataSync(), 'alpha 0 = level below, bit for bit');
      // Level 1 at full size is nearest-upsampled: constant over 4×4 blocks of the 32² output.
      const blocks = tf.reshape(lower, [4, 8, 4, 8, 4, 5]);
      assert.equal(maxAbsDiff(blocks, tf.max(blocks, [2, 4], true)), 0);
      const full = at(2, 1);
      const half = at(2, 0.5);
      assert.ok(maxAbsDiff(full, lower) > 1e-3);
      assert.ok(maxAbsDiff(half, tf.add(tf.mul(lower, 0.5), tf.mul(full, 0.5))) < 1e-5);
    });
    // alpha 1 ignores the lower level's toRGB; alpha 0.5 does not.
    const before1 = tf.tidy(() => at(2, 1));
    const beforeHalf = tf.tidy(() => at(2, 0.5));
    const restore = perturb(g.variables['8x8/torgb/kernel']!);
    tf.tidy(() => {
      assert.equal(maxAbsDiff(at(2, 1), before1), 0);
      assert.ok(maxAbsDiff(at(2, 0.5), beforeHalf) > 1e-3);
    });
    restore();
    tf.dispose([before1, beforeHalf]);
  });

  it("fades D in the same way, and prepares reals like G's output at the current level", () => {
    const d = buildProGanDiscriminator(TINY, 2);
    after(() => d.dispose());
    const images = realBatch(4, 4, 32);
    after(() => images.dispose());
    const at = (level: number, alpha: number): tf.Tensor => {
      d.setGrowth({ level, alpha });
      return d.score(images);
    };
    tf.tidy(() => {
      assert.ok(maxAbsDiff(at(2, 0), at(1, 1)) < 1e-5, 'alpha 0 = level below');
      assert.ok(maxAbsDiff(at(2, 1), at(1, 1)) > 1e-4);
      d.setGrowth({ level: 3, alpha: 1 });
      assert.equal(d.prepareReals(images), images, 'fully grown: reals untouched');
      d.setGrowth({ level: 2, alpha: 0 });
      // 16² level fading in at alpha 0: reals look like the 8² level, upsampled (constant 4×4 blocks).
      const prepared = d.prepareReals(images);
      const blocks = tf.reshape(prepared, [4, 8, 4, 8, 4, 5]);
      assert.equal(maxAbsDiff(blocks, tf.max(blocks, [2, 4], true)), 0);
      assert.ok(maxAbsDiff(tf.mean(prepared), tf.mean(images)) < 1e-5, 'box averages keep the mean');
    });
    const before1 = tf.tidy(() => at(2, 1));
    const restore = perturb(d.variables['8x8/fromrgb/kernel']!);
    tf.tidy(() => {
      assert.equal(maxAbsDiff(at(2, 1), before1), 0, 'alpha 1 ignores the lower fromRGB');
      assert.ok(maxAbsDiff(at(2, 0.5), at(2, 1)) > 1e-4);
    });
    restore();
    before1.dispose();
  });

  it('scores a sample with its minibatch group: the stddev feature couples the batch', () => {
    const d = buildProGanDiscriminator(TINY, 3);
    after(() => d.dispose());
    tf.tidy(() => {
      const batch = realBatch(5, 8, 32);
      const other = realBatch(6, 8, 32);
      // Change sample 4 only: group size 4 puts samples 0 and 4 in one group (i mod 2), 1 and 5 in the other.
      const mask = tf.tensor4d([0, 0, 0, 0, 1, 0, 0, 0], [8, 1, 1, 1]);
      const edited: tf.Tensor4D = tf.add(tf.mul(batch, tf.sub(1, mask)), tf.mul(other, mask));
      const a = d.score(batch).dataSync();
      const b = d.score(edited).dataSync();
      assert.notEqual(a[0], b[0], 'same group');
      assert.equal(a[1], b[1], 'other group');
      assert.notEqual(a[4], b[4]);
    });
  });

  it("appends the minibatch stddev of each sample's group (checked against a direct computation)", () => {
    for (const [n, group] of [
      [8, 4],
      [6, 2],
    ] as const) {
      const [h, w, c] = [3, 2, 5];
      const x = tf.randomNormal([n, h, w, c], 0, 1, 'float32', n) as tf.Tensor4D;
      const out = minibatchStddev(x, group, 1);
      assert.deepEqual(out.shape, [n, h, w, c + 1]);
      const xs = x.arraySync();
      const got = out.arraySync();
      const groups = n / group;
      for (let i = 0; i < n; i++) {
        // sample i belongs to the group of samples j with j % groups == i % groups
        const members = Array.from({ length: group }, (_, k) => k * groups + (i % groups));
        let total = 0;
        for (let y = 0; y < h; y++) {
          for (let xi = 0; xi < w; xi++) {
            for (let ch = 0; ch < c; ch++) {
              const v = members.map((m) => xs[m]![y]![xi]![ch]!);
              const mean = v.reduce((a, b) => a + b, 0) / group;
              total += Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / group + 1e-8);
            }
          }
        }
        const expected = total / (h * w * c);
        assert.ok(
          Math.abs(got[i]![1]![1]![c]! - expected) < 1e-5,
          `sample ${i}: ${got[i]![1]![1]![c]} vs ${expected}`,
        );
      }
      tf.dispose([x, out]);
    }
  });

  it('has the same gradient-penalty gradients on wasm as on the reference cpu backend', async () => {
    const penaltyGradients = (): Map<string, Float32Array> => {
      const d = buildProGanDiscriminator(TINY16, 3);
      d.setGrowth({ level: 2, alpha: 0.5 });
      const reals = realBatch(1, 4, 16);
      const fakes = realBatch(2, 4, 16);
      const alpha = tf.tensor1d([0.1, 0.4, 0.6, 0.9]);
      const nameOf = new Map(Object.entries(d.variables).map(([name, v]) => [v.name, name]));
      const { value, grads } = tf.variableGrads(
        () => wganGpDiscriminatorLoss((x) => d.score(x), reals, fakes, { alpha }).loss,
        Object.values(d.variables),
      );
      const result = new Map(
        Object.entries(grads).map(([name, g]) => [nameOf.get(name)!, (g.dataSync() as Float32Array).slice()]),
      );
      tf.dispose([value, grads, reals, fakes, alpha]);
      d.dispose();
      return result;
    };
    const onWasm = penaltyGradients();
    await selectBackend({ prefer: 'cpu', allowCpuTraining: true });
    let onCpu: Map<string, Float32Array>;
    try {
      onCpu = penaltyGradients();
    } finally {
      await useWasm();
    }
    assert.deepEqual([...onWasm.keys()].sort(), [...onCpu.keys()].sort());
    for (const [name, values] of onWasm) {
      const reference = onCpu.get(name)!;
      const scale = Math.max(...reference.map(Math.abs), 1e-6);
      const error = Math.max(...values.map((v, i) => Math.abs(v - reference[i]!)));
      assert.ok(error <= 1e-3 * scale, `${name}: ${error} vs scale ${scale}`);
    }
  });

  it('truncates in the normalised latent: psi 0 gives one image for every z, psi 1 the plain output', () => {
    const g = buildProGanGenerator(TINY, 4);
    after(() => g.dispose());
    // ψ scales the latent's share against the first layer's learned bias (zero at init, where LeakyReLU and
    // pixel norm would make any ψ > 0 a no-op): give it the kind of value training does.
    tf.tidy(() => g.variables['4x4/dense/bias']!.assign(tf.randomNormal([16], 0, 1, 'float32', 1)));
    tf.tidy(() => {
      const z = latents(7, 3, TINY.latentDim);
      const plain = g.generate(z);
      assert.deepEqual(g.generate(z, { truncationPsi: 1 }).dataSync(), plain.dataSync());
      const zero = g.generate(z, { truncationPsi: 0 });
      assert.equal(maxAbsDiff(tf.slice(zero, 0, 1), tf.slice(zero, 1, 1)), 0);
      assert.equal(maxAbsDiff(tf.slice(zero, 0, 1), tf.slice(zero, 2, 1)), 0);
      const half = g.generate(z, { truncationPsi: 0.5 });
      assert.ok(maxAbsDiff(half, plain) > 1e-4 && maxAbsDiff(half, zero) > 1e-4);
    });
  });

  it('is deterministic for a seed: the same weights and samples, other weights for another seed', () => {
    const [a, b, c] = [5, 5, 6].map((seed) => buildProGan(TINY, seed));
    after(() => [a, b, c].forEach((p) => [p!.generator, p!.discriminator].forEach((m) => m.dispose())));
    const [sa, sb, sc] = [a, b, c].map((p) => snapshot(p!.generator));
    assert.deepEqual(changed(sa!, sb!), []);
    assert.ok(changed(sa!, sc!).length > 0);
    assert.deepEqual(changed(snapshot(a!.discriminator), snapshot(b!.discriminator)), []);
    tf.tidy(() => {
      const z = latents(1, 2, TINY.latentDim);
      assert.deepEqual(a!.generator.generate(z).dataSync(), b!.generator.generate(z).dataSync());
    });
  });

  it('trains (WGAN-GP, mid-fade): G and D weights change and no tensors leak across steps', () => {
    const { generator: g, discriminator: d } = buildProGan(TINY16, 7);
    const optimizers = {
      g: tf.train.adam(0.001, 0, 0.99, 1e-8),
      d: tf.train.adam(0.001, 0, 0.99, 1e-8),
    };
    const reals = realBatch(8, 4, 16);
    after(() => {
      [g, d].forEach((m) => m.dispose());
      optimizers.g.dispose();
      optimizers.d.dispose();
      reals.dispose();
    });
    g.setGrowth({ level: 2, alpha: 0.5 });
    d.setGrowth({ level: 2, alpha: 0.5 });
    const [g0, d0] = [snapshot(g), snapshot(d)];
    localGanStep(g, d, optimizers, reals, { loss: 'wgan-gp', seed: 0 }); // creates the optimizer slots
    const tensors = tf.memory().numTensors;
    for (let step = 1; step <= 3; step++) {
      const { d: dLoss, g: gLoss } = localGanStep(g, d, optimizers, reals, { loss: 'wgan-gp', seed: step });
      assert.ok(Number.isFinite(dLoss) && Number.isFinite(gLoss));
      assert.equal(tf.memory().numTensors, tensors, `step ${step}`);
    }
    // Mid-fade at 16² every variable is in use except the 4×4 level's toRGB / fromRGB.
    const used = (names: string[]) => names.filter((name) => !/^4x4\/(torgb|fromrgb)\//.test(name)).sort();
    assert.deepEqual(changed(g0, snapshot(g)).sort(), used(Object.keys(g.variables)));
    assert.deepEqual(changed(d0, snapshot(d)).sort(), used(Object.keys(d.variables)));
  });

  it('saves and loads: a weights blob rebuilds a generator with the same samples', () => {
    const g = buildProGanGenerator(TINY, 9);
    after(() => g.dispose());
    tf.tidy(() => {
      for (const v of Object.values(g.variables)) v.assign(tf.add(v, 0.01)); // not the seed's init
    });
    const blob = encodeWeights(variablesToWeights(g.variables), { architecture: g.architecture });
    assert.equal(decodeWeights(blob).manifest.architecture.name, 'progan');
    const loaded = loadGenerator(blob);
    after(() => loaded.dispose());
    tf.tidy(() => {
      const z = latents(2, 3, TINY.latentDim);
      assert.deepEqual(loaded.generate(z).dataSync(), g.generate(z).dataSync());
    });
  });

  it('registers as progan with WGAN-GP and four profiles', () => {
    const entry = ganArchitecture('progan');
    assert.equal(entry.loss, 'wgan-gp');
    assert.deepEqual(Object.keys(entry.profiles).sort(), ['cpu', 'cpu32', 'paper', 'tiny']);
    const counts = Object.fromEntries(
      (['tiny', 'cpu'] as const).map((profile) => {
        const { generator, discriminator } = entry.build(entry.profiles[profile], 0);
        const result = [countParameters(generator.variables), countParameters(discriminator.variables)];
        generator.dispose();
        discriminator.dispose();
        return [profile, result];
      }),
    );
    assert.ok(counts.tiny![0]! < counts.cpu![0]!);
  });
});
