// The samplers' single steps against hand-computed closed forms (with stand-in ε-predictors), the sampling
// loop (determinism, valid annotation bytes, no leaks) and weights round trips.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../../util/rng.js';
import { assignWeights, decodeWeights, encodeWeights, variablesToWeights } from '../../weights/index.js';
import {
  ancestralStep,
  buildDdpmFromArchitecture,
  ddimStep,
  ddimTimesteps,
  ddpmArchitecture,
  diffusionLoss,
  normals,
  predictX0,
  sampleDdpm,
  toSliceBytes,
  type DdpmModel,
  type DdpmPrediction,
  type EpsilonPredictor,
} from './ddpm.js';
import { randomImages, tinyModel, useWasm } from './ddpm-spec-helpers.js';
import { createNoiseSchedule, type NoiseSchedule } from './schedule.js';

const SHAPE: [number, number, number, number] = [2, 3, 4, 5];
const SIZE = 2 * 3 * 4 * 5;
const PER_IMAGE = SIZE / 2;

/** x spread over [-3, 3] so that some x̂_0 leave [-1, 1] and clipping matters; fixed ε̂ and z. */
function fixtures(seed: string) {
  const rng = createRng(seed);
  const x = Float32Array.from({ length: SIZE }, () => rng.uniform(-3, 3));
  const epsilon = normals(rng, SIZE);
  const z = normals(rng, SIZE);
  return { x, epsilon, z };
}

/** A stand-in ε_θ that returns a fixed tensor and records the timesteps it was asked for. */
function fixedPredictor(epsilon: Float32Array): { predict: EpsilonPredictor; calls: number[][] } {
  const calls: number[][] = [];
  const predict: EpsilonPredictor = (x, t) => {
    assert.deepEqual(x.shape, SHAPE);
    calls.push(Array.from(t));
    return tf.tensor4d(epsilon, SHAPE);
  };
  return { predict, calls };
}

const clip = (value: number) => Math.min(1, Math.max(-1, value));

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(
      Math.abs(actual[i]! - expected[i]!) <= tolerance,
      `element ${i}: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

describe('sampler steps (closed forms, stand-in ε-predictor)', () => {
  before(useWasm);
  const schedule = createNoiseSchedule('linear', 1000);

  it('DDIM η = 0: x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε′, with and without clipping x̂_0', () => {
    const { x, epsilon } = fixtures('ddim');
    const t = 500;
    const tPrev = 480;
    const ab = schedule.alphasCumprod[t]!;
    const abp = schedule.alphasCumprod[tPrev]!;
    for (const clipDenoised of [true, false]) {
      const { predict, calls } = fixedPredictor(epsilon);
      const actual = tf.tidy(() =>
        ddimStep(predict, schedule, tf.tensor4d(x, SHAPE), t, tPrev, undefined, { clipDenoised }).dataSync(),
      );
      assert.deepEqual(calls, [[t, t]]);
      let clipped = 0;
      const expected = Array.from(x, (xi, i) => {
        const raw = xi / Math.sqrt(ab) - Math.sqrt(1 / ab - 1) * epsilon[i]!;
        const x0 = clipDenoised ? clip(raw) : raw;
        if (x0 !== raw) clipped++;
        const eps = (xi - Math.sqrt(ab) * x0) / Math.sqrt(1 - ab);
        return Math.sqrt(abp) * x0 + Math.sqrt(1 - abp) * eps;
      });
      if (clipDenoised) assert.ok(clipped > 10, `only ${clipped} values clipped`);
      assertClose(actual, expected);
    }
  });

  it('DDIM η > 0 adds σ z, σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev); last step: x̂_0', () => {
    const { x, epsilon, z } = fixtures('ddim-eta');
    const t = 300;
    const tPrev = 200;
    const eta = 0.7;
    const ab = schedule.alphasCumprod[t]!;
    const abp = schedule.alphasCumprod[tPrev]!;
    const sigma = eta * Math.sqrt((1 - abp) / (1 - ab)) * Math.sqrt(1 - ab / abp);
    const { predict } = fixedPredictor(epsilon);
    const actual = tf.tidy(() =>
      ddimStep(predict, schedule, tf.tensor4d(x, SHAPE), t, tPrev, tf.tensor4d(z, SHAPE), { eta }).dataSync(),
    );
    const expected = Array.from(x, (xi, i) => {
      const x0 = clip(xi / Math.sqrt(ab) - Math.sqrt(1 / ab - 1) * epsilon[i]!);
      const eps = (xi - Math.sqrt(ab) * x0) / Math.sqrt(1 - ab);
      return Math.sqrt(abp) * x0 + Math.sqrt(1 - abp - sigma * sigma) * eps + sigma * z[i]!;
    });
    assertClose(actual, expected);
    assert.throws(() =>
      tf.tidy(() => ddimStep(predict, schedule, tf.tensor4d(x, SHAPE), t, tPrev, undefined, { eta })),
    );

    // t = 0 → t_prev = −1 (ᾱ_{−1} = 1): the clean estimate itself, no noise even with η > 0.
    const ab0 = schedule.alphasCumprod[0]!;
    const last = tf.tidy(() =>
      ddimStep(predict, schedule, tf.tensor4d(x, SHAPE), 0, -1, undefined, { eta }).dataSync(),
    );
    assertClose(
      last,
      Array.from(x, (xi, i) => clip(xi / Math.sqrt(ab0) - Math.sqrt(1 / ab0 - 1) * epsilon[i]!)),
    );
  });

  it('ancestral: x_{t−1} = coef1 x̂_0 + coef2 x_t + σ_t z, σ² = β_t or β̃_t, no noise at t = 0', () => {
    const { x, epsilon, z } = fixtures('ancestral');
    const t = [300, 0];
    for (const variance of ['large', 'small'] as const) {
      const { predict, calls } = fixedPredictor(epsilon);
      const actual = tf.tidy(() =>
        ancestralStep(predict, schedule, tf.tensor4d(x, SHAPE), t, tf.tensor4d(z, SHAPE), {
          variance,
        }).dataSync(),
      );
      assert.deepEqual(calls, [t]);
      const expected = Array.from(x, (xi, i) => {
        const ti = t[Math.floor(i / PER_IMAGE)]!;
        const ab = schedule.alphasCumprod[ti]!;
        const abp = ti === 0 ? 1 : schedule.alphasCumprod[ti - 1]!;
        const beta = schedule.betas[ti]!;
        const x0 = clip(xi / Math.sqrt(ab) - Math.sqrt(1 / ab - 1) * epsilon[i]!);
        const mean =
          ((beta * Math.sqrt(abp)) / (1 - ab)) * x0 + (((1 - abp) * Math.sqrt(1 - beta)) / (1 - ab)) * xi;
        const sigma2 = ti === 0 ? 0 : variance === 'large' ? beta : (beta * (1 - abp)) / (1 - ab);
        return mean + Math.sqrt(sigma2) * z[i]!;
      });
      assertClose(actual, expected);
    }
    // Without clipping the mean is the ε-form 1/√α_t (x_t − β_t/√(1 − ᾱ_t) ε̂) of Ho et al.'s Algorithm 2.
    const { predict } = fixedPredictor(epsilon);
    const unclipped = tf.tidy(() =>
      ancestralStep(predict, schedule, tf.tensor4d(x, SHAPE), [700, 700], tf.tensor4d(z, SHAPE), {
        clipDenoised: false,
      }).dataSync(),
    );
    const beta = schedule.betas[700]!;
    const ab = schedule.alphasCumprod[700]!;
    assertClose(
      unclipped,
      Array.from(
        x,
        (xi, i) =>
          (xi - (beta / Math.sqrt(1 - ab)) * epsilon[i]!) / Math.sqrt(1 - beta) + Math.sqrt(beta) * z[i]!,
      ),
    );
  });

  it('DDIM sub-sequence: 0, k, 2k, … with k = ⌊T/S⌋', () => {
    assert.deepEqual(
      ddimTimesteps(1000, 50),
      Array.from({ length: 50 }, (_, i) => 20 * i),
    );
    assert.deepEqual(ddimTimesteps(4000, 50).slice(-2), [3840, 3920]);
    assert.deepEqual(
      ddimTimesteps(50, 50),
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.throws(() => ddimTimesteps(50, 51), /1 ≤ S ≤ T/);
  });

  it('turns [-1, 1] floats into slice bytes, the annotation snapped to the nearest of 0/51/102/204', () => {
    const pixel = (b: number) => b / 127.5 - 1;
    const annotationBytes = [0, 25, 26, 76, 77, 152, 154, 255, -40, 300];
    const values = new Float32Array(annotationBytes.length * 5);
    annotationBytes.forEach((b, p) => {
      values.set([pixel(0), pixel(255), 0, pixel(300), pixel(b)], p * 5);
    });
    const bytes = toSliceBytes(values, 5);
    for (let p = 0; p < annotationBytes.length; p++) {
      assert.deepEqual([...bytes.subarray(p * 5, p * 5 + 4)], [0, 255, 128, 255]);
    }
    assert.deepEqual(
      annotationBytes.map((_, p) => bytes[p * 5 + 4]),
      [0, 0, 51, 51, 102, 102, 204, 204, 0, 204],
    );
  });
});

describe('v-prediction (Salimans & Ho 2022)', () => {
  before(useWasm);
  const t = [700, 40];

  /** diffusionLoss of a stand-in network that always outputs `output`, at t. */
  const fixedOutputLoss = (
    schedule: NoiseSchedule,
    x0: Float32Array,
    noise: Float32Array,
    output: Float32Array,
    prediction: DdpmPrediction,
    censorBlack = false,
  ): number =>
    tf.tidy(
      () =>
        diffusionLoss(
          () => tf.tensor4d(output, SHAPE),
          schedule,
          tf.tensor4d(x0, SHAPE),
          t,
          tf.tensor4d(noise, SHAPE),
          prediction,
          censorBlack,
        ).dataSync()[0]!,
    );

  it('turns the network’s v̂ into ε̂ = √(1−ᾱ) x + √ᾱ v̂, so x̂_0 = √ᾱ x − √(1−ᾱ) v̂', () => {
    const model = tinyModel(5, { prediction: 'v', timesteps: 1000 });
    after(() => model.dispose());
    const input = randomImages('v-model', 2, 16, 5);
    after(() => input.dispose());
    const x = input.dataSync();
    const perImage = x.length / 2;
    const { epsilon, v, x0 } = tf.tidy(() => {
      const eps = model.predictEpsilon(input, t);
      return {
        epsilon: eps.dataSync(),
        v: model.unet.forward(input, t).dataSync(),
        x0: predictX0(model.schedule, input, t, eps, false).dataSync(),
      };
    });
    assert.ok(
      v.some((value) => Math.abs(value) > 0.01),
      'the perturbed network outputs something',
    );
    const ab = (i: number) => model.schedule.alphasCumprod[t[Math.floor(i / perImage)]!]!;
    assertClose(
      epsilon,
      Array.from(x, (xi, i) => Math.sqrt(1 - ab(i)) * xi + Math.sqrt(ab(i)) * v[i]!),
    );
    assertClose(
      x0,
      Array.from(x, (xi, i) => Math.sqrt(ab(i)) * xi - Math.sqrt(1 - ab(i)) * v[i]!),
      1e-4,
    );
  });

  it('trains the network on v = √ᾱ ε − √(1−ᾱ) x_0 (ε for an ε-network)', () => {
    const schedule = createNoiseSchedule('linear', 1000);
    const { x: x0, epsilon: noise, z: output } = fixtures('v-loss');
    const vLoss = fixedOutputLoss(schedule, x0, noise, output, 'v');
    const epsilonLoss = fixedOutputLoss(schedule, x0, noise, output, 'epsilon');
    const mean = (f: (i: number) => number) => Array.from(x0, (_, i) => f(i)).reduce((a, b) => a + b) / SIZE;
    const ab = (i: number) => schedule.alphasCumprod[t[Math.floor(i / PER_IMAGE)]!]!;
    const vTarget = (i: number) => Math.sqrt(ab(i)) * noise[i]! - Math.sqrt(1 - ab(i)) * x0[i]!;
    assert.ok(Math.abs(vLoss! - mean((i) => (vTarget(i) - output[i]!) ** 2)) < 1e-4, `v loss ${vLoss}`);
    assert.ok(
      Math.abs(epsilonLoss! - mean((i) => (noise[i]! - output[i]!) ** 2)) < 1e-4,
      `ε loss ${epsilonLoss}`,
    );
  });

  for (const prediction of ['v', 'epsilon'] as const) {
    it(`censors black (${prediction}): at x_0 = −1 only predictions whose x̂_0 lies above black are charged`, () => {
      const schedule = createNoiseSchedule('linear', 1000);
      const { x, epsilon: noise, z: output } = fixtures(`censor-${prediction}`);
      // Half of the elements black, as a background is; the rest anywhere in (−1, 1].
      const x0 = Float32Array.from(x, (value, i) => (i % 2 === 0 ? -1 : Math.tanh(value)));
      const loss = (censor: boolean) => fixedOutputLoss(schedule, x0, noise, output, prediction, censor);
      const ab = (i: number) => schedule.alphasCumprod[t[Math.floor(i / PER_IMAGE)]!]!;
      const xt = (i: number) => Math.sqrt(ab(i)) * x0[i]! + Math.sqrt(1 - ab(i)) * noise[i]!;
      const target = (i: number) =>
        prediction === 'v' ? Math.sqrt(ab(i)) * noise[i]! - Math.sqrt(1 - ab(i)) * x0[i]! : noise[i]!;
      // x̂_0 of the prediction, by its definition (not through the residual's sign).
      const x0Hat = (i: number) =>
        prediction === 'v'
          ? Math.sqrt(ab(i)) * xt(i) - Math.sqrt(1 - ab(i)) * output[i]!
          : (xt(i) - Math.sqrt(1 - ab(i)) * output[i]!) / Math.sqrt(ab(i));
      let charged = 0;
      let free = 0;
      const expected =
        Array.from(x0, (value, i) => {
          const squared = (output[i]! - target(i)) ** 2;
          if (value > -1) return squared;
          if (x0Hat(i) > -1) {
            charged++;
            return squared;
          }
          free++;
          return 0;
        }).reduce((a, b) => a + b) / SIZE;
      assert.ok(charged > 0 && free > 0, `black elements above/below: ${charged}/${free}`);
      assert.ok(Math.abs(loss(true) - expected) < 1e-4, `censored loss ${loss(true)} vs ${expected}`);
      assert.ok(loss(false) > loss(true) + 1e-3, 'uncensored charges the below-black predictions too');
    });
  }

  it('is the CPU profiles’ choice; the paper’s and ε-configs leave the architecture record as it was', () => {
    assert.equal(ddpmArchitecture('cpu').config.prediction, 'v');
    assert.equal(ddpmArchitecture('cpu32').config.prediction, 'v');
    assert.equal(ddpmArchitecture('paper').config.prediction, 'epsilon');
    const epsilonModel = tinyModel(2);
    const vModel = tinyModel(2, { prediction: 'v' });
    after(() => [epsilonModel, vModel].forEach((m) => m.dispose()));
    assert.equal('prediction' in epsilonModel.architecture.config, false);
    assert.equal(vModel.architecture.config.prediction, 'v');
    assert.equal(buildDdpmFromArchitecture(vModel.architecture).config.prediction, 'v');
    assert.throws(() => tinyModel(2, { prediction: 'x0' as 'v' }), /unknown prediction 'x0' \(epsilon, v\)/);
  });

  it('records censorBlack only when on; the CPU profiles train with it, the paper’s as published', () => {
    assert.equal(ddpmArchitecture('cpu').config.censorBlack, true);
    assert.equal(ddpmArchitecture('cpu32').config.censorBlack, true);
    assert.equal('censorBlack' in ddpmArchitecture('paper').config, false);
    const plain = tinyModel(2);
    const censored = tinyModel(2, { censorBlack: true });
    after(() => [plain, censored].forEach((m) => m.dispose()));
    assert.equal('censorBlack' in plain.architecture.config, false);
    assert.equal(buildDdpmFromArchitecture(censored.architecture).config.censorBlack, true);
    assert.throws(
      () => tinyModel(2, { censorBlack: 'yes' as never }),
      /censorBlack must be true or false, got "yes"/,
    );
  });
});

describe('sampling a tiny model', () => {
  let model: DdpmModel;
  before(async () => {
    await useWasm();
    model = tinyModel(11);
  });
  after(() => model.dispose());
  const ddim = { method: 'ddim', steps: 10 } as const;

  it('is deterministic for a seed, differs between seeds, and does not depend on batching', async () => {
    const first = await sampleDdpm(model, { count: 3, seed: 9, sampler: ddim });
    assert.equal(first.length, 3 * 16 * 16 * 5);
    assert.deepEqual(await sampleDdpm(model, { count: 3, seed: 9, sampler: ddim }), first);
    assert.deepEqual(await sampleDdpm(model, { count: 3, seed: 9, sampler: ddim, batchSize: 2 }), first);
    const tail = await sampleDdpm(model, { count: 2, seed: 9, sampler: ddim, firstIndex: 1 });
    assert.deepEqual(tail, first.subarray(16 * 16 * 5));
    const other = await sampleDdpm(model, { count: 3, seed: 10, sampler: ddim });
    assert.notDeepEqual(other, first);
  });

  it('runs the full ancestral chain (T = 50) deterministically, in both variances', async () => {
    for (const variance of ['large', 'small'] as const) {
      const sampler = { method: 'ancestral', variance } as const;
      const a = await sampleDdpm(model, { count: 2, seed: 4, sampler });
      const b = await sampleDdpm(model, { count: 2, seed: 4, sampler, batchSize: 1 });
      assert.deepEqual(a, b);
    }
  });

  it('emits annotation bytes in {0, 51, 102, 204} only, image bytes across the range; no leaks', async () => {
    const before = tf.memory().numTensors;
    const steps: number[] = [];
    const bytes = await sampleDdpm(model, {
      count: 4,
      seed: 'labels',
      sampler: { method: 'ddim', steps: 5, eta: 1 },
      batchSize: 3,
      onProgress: (p) => steps.push(p.step),
    });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(steps, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]);
    const annotation = new Set<number>();
    const image = new Set<number>();
    bytes.forEach((b, i) => (i % 5 === 4 ? annotation : image).add(b));
    assert.ok(
      [...annotation].every((b) => [0, 51, 102, 204].includes(b)),
      `annotation ${[...annotation]}`,
    );
    assert.ok(image.size > 50, `only ${image.size} distinct image bytes`);
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    const before = tf.memory().numTensors;
    const run = sampleDdpm(model, {
      count: 2,
      seed: 1,
      sampler: { method: 'ancestral' },
      signal: controller.signal,
      onProgress: (p) => p.step === 3 && controller.abort(),
    });
    await assert.rejects(run, { name: 'AbortError' });
    assert.equal(tf.memory().numTensors, before);
  });

  it('saves to a weights blob, loads into a model rebuilt from its architecture: same samples', async () => {
    const blob = encodeWeights(variablesToWeights(model.variables), {
      architecture: model.architecture,
      createdAt: '2026-01-01T00:00:00.000Z',
    });
    const decoded = decodeWeights(blob);
    assert.equal(decoded.manifest.architecture.name, 'ddpm');
    const loaded = buildDdpmFromArchitecture(decoded.manifest.architecture, 12345);
    after(() => loaded.dispose());
    assert.deepEqual(loaded.config, model.config);
    assignWeights(loaded.variables, decoded.tensors);
    const sampler = { method: 'ddim', steps: 8 } as const;
    assert.deepEqual(
      await sampleDdpm(loaded, { count: 2, seed: 3, sampler }),
      await sampleDdpm(model, { count: 2, seed: 3, sampler }),
    );
  });
});

describe('ddpm architecture records', () => {
  it('describe the paper profile: 256², 64 channels, 3 res blocks, T = 4000 linear', () => {
    const { name, config } = ddpmArchitecture('paper');
    assert.equal(name, 'ddpm');
    assert.deepEqual(
      [config.imageSize, config.baseChannels, config.numResBlocks, config.timesteps, config.schedule],
      [256, 64, 3, 4000, 'linear'],
    );
    assert.equal(ddpmArchitecture('cpu', { schedule: 'cosine' }).config.schedule, 'cosine');
    assert.throws(() => ddpmArchitecture('huge' as 'cpu'), /unknown ddpm profile 'huge'/);
  });

  it('refuse other names and incomplete configs', () => {
    assert.throws(() => buildDdpmFromArchitecture({ name: 'stylegan2', config: {} }), /is not 'ddpm'/);
    const { config } = ddpmArchitecture('tiny');
    const { timesteps: _t, ...withoutT } = config;
    assert.throws(() => buildDdpmFromArchitecture({ name: 'ddpm', config: withoutT }), /lacks timesteps/);
  });
});
