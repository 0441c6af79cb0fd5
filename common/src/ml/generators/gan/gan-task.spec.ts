import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../../backend/index.js';
import { decodeTrainingState } from '../../training/phases.js';
import type { TrainingProgress } from '../../training/progress.js';
import { startTraining, type TrainingResult } from '../../training/run.js';
import { decodeWeights, encodeWeights, variablesToWeights } from '../../weights/index.js';

import '../stylegan1/index.js';
import '../stylegan3/index.js';
import { lazyOptimizer, resolveGanRecipe, type GanTaskConfig } from './gan-task.js';
import { buildGenerator, ganArchitecture, ganConfig, loadGenerator } from './registry.js';
import { averageLatent, sampleGenerator } from './sampling.js';
import { ganSpec, writeTinySliceStore } from './testing/gan-test-helpers.js';
import { buildTinyDcgan } from './testing/tiny-dcgan.js';

const quiet = { logger: () => {} };
const TINY = { resolution: 8, latentDim: 8, width: 8 };

function assertMemoryFlat(result: TrainingResult): void {
  for (const report of result.workers) {
    assert.equal(
      report.tensors.atEnd,
      report.tensors.afterFirstStep,
      `worker ${report.worker} leaked tensors`,
    );
  }
}

function byName(blob: Uint8Array): Map<string, Float32Array> {
  return new Map(decodeWeights(blob).tensors.map((t) => [t.name, t.data as Float32Array]));
}

describe("the 'gan' training task (tiny DCGAN on a tiny slice store)", () => {
  let dir: string;
  let store: string;
  let checkpoints = 0;
  const checkpointDir = () => path.join(dir, `run-${checkpoints++}`);
  let trained: TrainingResult;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fedsynth-gan-'));
    store = await writeTinySliceStore(dir, 8);
    await selectBackend({ prefer: 'wasm', logger: () => {} });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a step changes G and D; D, lazy R1 and G phases run; the EMA of G is returned; memory stays flat', async () => {
    const events: TrainingProgress[] = [];
    trained = await startTraining(ganSpec(store, checkpointDir()), {
      ...quiet,
      onProgress: (p) => events.push(p),
    }).done;
    assert.equal(trained.steps, 3);
    assertMemoryFlat(trained);
    assert.deepEqual(
      events.map((p) => Object.keys(p.phases!)),
      [
        ['D', 'Dreg', 'G'],
        ['D', 'G'],
        ['D', 'Dreg', 'G'],
      ],
    );
    for (const p of events) {
      assert.ok(
        Number.isFinite(p.phases!.D!.metrics.realScore) && Number.isFinite(p.phases!.G!.metrics.fakeScore),
      );
      assert.equal(p.loss, p.phases!.D!.loss);
    }
    assert.ok(events[0]!.phases!.Dreg!.metrics.gradNormSq! > 0);

    const { generator, discriminator } = buildTinyDcgan(TINY, 5);
    try {
      const weights = byName(trained.weightsBlob);
      const changed = (prefix: string, variables: Record<string, tf.Variable>) =>
        Object.entries(variables).filter(([name, variable]) => {
          const after = weights.get(`${prefix}/${name}`)!;
          return variable.dataSync().some((v, i) => v !== after[i]);
        }).length;
      assert.ok(changed('G', generator.variables) >= 4, 'G weights changed');
      assert.ok(changed('D', discriminator.variables) >= 4, 'D weights changed');
      assert.equal(
        weights.size,
        Object.keys(generator.variables).length + Object.keys(discriminator.variables).length,
      );

      const ema = decodeWeights(trained.emaWeightsBlob!);
      assert.deepEqual(ema.manifest.architecture, { name: 'tiny-dcgan', config: TINY });
      assert.deepEqual(
        ema.tensors.map((t) => t.name),
        Object.keys(generator.variables).sort(),
      );
    } finally {
      generator.dispose();
      discriminator.dispose();
    }
    const state = decodeTrainingState(trained.optimizerBlob);
    assert.equal(state.optimizers.get('D')!.step, 3 + 2, 'D and Dreg share an optimizer');
    assert.equal(state.optimizers.get('G')!.step, 3);
    // Lazy R1 every 2 steps: D's Adam runs with StyleGAN2's c = 2/3.
    const d = state.optimizers.get('D')!.spec;
    assert.deepEqual(
      d,
      lazyOptimizer({ type: 'adamw', lr: 0.002, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 }, 2),
    );
    assert.ok(d.type === 'adamw' && Math.abs(d.lr - 0.002 * (2 / 3)) < 1e-15 && d.beta2 === 0.99 ** (2 / 3));
  });

  it('samples G_ema deterministically, with valid annotation bytes, the same after save and load', () => {
    const generator = loadGenerator(trained.emaWeightsBlob!);
    const tensorsBefore = tf.memory().numTensors;
    try {
      const a = sampleGenerator(generator, { n: 5, seed: 1, batchSize: 2 });
      assert.equal(a.length, 5 * 8 * 8 * 5);
      assert.deepEqual(sampleGenerator(generator, { n: 5, seed: 1, batchSize: 2 }), a);
      assert.notDeepEqual(sampleGenerator(generator, { n: 5, seed: 2, batchSize: 2 }), a);
      // Latent i depends on (seed, i) only: a generator without noise gives the same slices in any batching.
      assert.deepEqual(sampleGenerator(generator, { n: 5, seed: 1, batchSize: 5 }), a);
      const annotations = new Set(Array.from(a).filter((_, i) => i % 5 === 4));
      assert.ok(
        [...annotations].every((v) => [0, 51, 102, 204].includes(v)),
        `annotations ${[...annotations]}`,
      );
      const images = new Set(Array.from(a).filter((_, i) => i % 5 !== 4));
      assert.ok(images.size > 10, 'image channels are not snapped');

      const saved = encodeWeights(variablesToWeights(generator.variables), {
        architecture: generator.architecture,
      });
      const reloaded = loadGenerator(saved);
      try {
        assert.deepEqual(sampleGenerator(reloaded, { n: 5, seed: 1, batchSize: 2 }), a);
      } finally {
        reloaded.dispose();
      }
      assert.equal(tf.memory().numTensors, tensorsBefore, 'sampling leaves no tensors behind');
    } finally {
      generator.dispose();
    }
  });

  it('2 workers keep identical replicas (weights, EMA, optimizer state); ms per step for 1 vs 2 workers', async (t) => {
    const timed = async (workers: number) => {
      const times: number[] = [];
      const result = await startTraining(
        ganSpec(store, checkpointDir(), { steps: 8, batchSize: 8, workers }),
        {
          ...quiet,
          onProgress: (p) => times.push(p.stepMs),
        },
      ).done;
      const steady = times.slice(2);
      return { result, ms: steady.reduce((a, b) => a + b, 0) / steady.length };
    };
    const one = await timed(1);
    const two = await timed(2);
    assert.equal(two.result.workers[0]!.weightsChecksum, two.result.workers[1]!.weightsChecksum);
    assertMemoryFlat(two.result);
    t.diagnostic(
      `tiny DCGAN 8², batch 8, steps 3-8: ${one.ms.toFixed(1)} ms/step (1 worker), ${two.ms.toFixed(1)} (2)`,
    );
  });

  it('resumes a cancelled GAN run exactly (reals, mirroring, fakes, EMA, lazy phases)', async () => {
    const spec = { steps: 5, checkpointEvery: 0 };
    const straight = await startTraining(ganSpec(store, checkpointDir(), spec), quiet).done;
    const resumeDir = checkpointDir();
    const controller = new AbortController();
    const run = startTraining(ganSpec(store, resumeDir, spec), { ...quiet, signal: controller.signal });
    run.on('progress', (p) => {
      if (p.step === 2) controller.abort();
    });
    const cancelled = await run.done;
    assert.equal(cancelled.cancelled, true);
    assert.ok(readdirSync(resumeDir).some((name) => name.endsWith('.ema')));
    const resumed = await startTraining(ganSpec(store, resumeDir, spec), { ...quiet, resume: true }).done;
    assert.equal(resumed.resumedFromStep, cancelled.steps);
    assert.deepEqual(decodeWeights(resumed.weightsBlob).tensors, decodeWeights(straight.weightsBlob).tensors);
    assert.deepEqual(
      decodeWeights(resumed.emaWeightsBlob!).tensors,
      decodeWeights(straight.emaWeightsBlob!).tensors,
    );
    assert.deepEqual(resumed.losses, straight.losses);
  });

  it('style-based generators get style mixing, lazy path-length regularisation (its mean a buffer) and truncation', async () => {
    const events: TrainingProgress[] = [];
    const result = await startTraining(
      ganSpec(store, checkpointDir(), {
        config: { architecture: { name: 'tiny-dcgan', config: { ...TINY, style: true } } },
      }),
      { ...quiet, onProgress: (p) => events.push(p) },
    ).done;
    assertMemoryFlat(result);
    assert.deepEqual(
      events.map((p) => Object.keys(p.phases!)),
      [
        ['D', 'Dreg', 'G', 'Greg'],
        ['D', 'G'],
        ['D', 'Dreg', 'G', 'Greg'],
      ],
    );
    assert.ok(events[0]!.phases!.Greg!.metrics.pathLength! > 0);
    const state = decodeTrainingState(result.optimizerBlob);
    assert.equal(state.optimizers.get('G')!.step, 3 + 2);
    const plMean = state.buffers.find((b) => b.name === 'plMean')!.data[0]!;
    const lengths = events.filter((p) => p.phases!.Greg).map((p) => p.phases!.Greg!.metrics.pathLength!);
    const expected = lengths.reduce((mean, length) => mean + 0.01 * (length - mean), 0);
    assert.ok(Math.abs(plMean - expected) < 1e-6, `plMean ${plMean} vs ${expected}`);

    const generator = loadGenerator(result.emaWeightsBlob!);
    try {
      const average = averageLatent(generator, { samples: 64, seed: 3 })!;
      assert.deepEqual(average.shape, [8]);
      const truncated = sampleGenerator(generator, {
        n: 3,
        seed: 1,
        truncationPsi: 0.5,
        averageLatent: average,
      });
      assert.deepEqual(
        sampleGenerator(generator, { n: 3, seed: 1, truncationPsi: 0.5, averageLatent: average }),
        truncated,
      );
      assert.notDeepEqual(sampleGenerator(generator, { n: 3, seed: 1 }), truncated);
      // ψ = 0 maps every latent to w̄: identical samples.
      const collapsed = sampleGenerator(generator, {
        n: 2,
        seed: 1,
        truncationPsi: 0,
        averageLatent: average,
      });
      assert.deepEqual(collapsed.subarray(0, 320), collapsed.subarray(320));
      average.dispose();
    } finally {
      generator.dispose();
    }
  });

  it('WGAN-GP architectures train with D (gradient penalty, drift) and G phases only', async () => {
    const events: TrainingProgress[] = [];
    const result = await startTraining(
      ganSpec(store, checkpointDir(), {
        steps: 2,
        config: { architecture: { name: 'tiny-dcgan-wgan', profile: 'tiny' } },
      }),
      { ...quiet, onProgress: (p) => events.push(p) },
    ).done;
    assert.deepEqual(
      events.map((p) => Object.keys(p.phases!)),
      [
        ['D', 'G'],
        ['D', 'G'],
      ],
    );
    assert.ok(events.every((p) => p.phases!.D!.metrics.gradientPenalty! > 0));
    assert.ok(result.emaWeightsBlob);
  });

  it('refuses a store whose slice size differs from the generator', async () => {
    await assert.rejects(
      startTraining(
        ganSpec(store, checkpointDir(), {
          config: { architecture: { name: 'tiny-dcgan', config: { ...TINY, resolution: 16 } } },
        }),
        quiet,
      ).done,
      /slices are 8² but the tiny-dcgan generator makes 16²/,
    );
  });
});

describe('GAN recipes: official, per profile, per task', () => {
  before(() => selectBackend({ prefer: 'wasm', ...quiet }));

  it("applies the named profile's recipe changes under the task's own overrides", () => {
    const recipe = (name: string, architecture: GanTaskConfig['architecture'], overrides = {}) => {
      const generator = buildGenerator({ name, config: ganConfig(name, { profile: 'tiny' }) }, 1);
      try {
        return resolveGanRecipe(ganArchitecture(name), generator, { architecture, store: '', ...overrides });
      } finally {
        generator.dispose();
      }
    };
    const official = ganArchitecture('stylegan1').options;
    const cpu32Config = ganConfig('stylegan1', { profile: 'cpu32' });
    // A config without its profile, and the cpu profile (no changes): the official StyleGAN 1 recipe.
    for (const architecture of [{ name: 'stylegan1', config: cpu32Config }, { name: 'stylegan1' }]) {
      const r = recipe('stylegan1', architecture);
      assert.equal(r.lazyRegInterval, 1);
      assert.equal(r.styleMixingProbability, official.styleMixingProbability);
      assert.deepEqual(r.discriminatorOptimizer, official.discriminatorOptimizer);
    }
    // cpu32: lazy R1 every 16 D steps (D's Adam scaled by 16/17, as lazy regularisation does) and no mixing.
    const cpu32 = recipe('stylegan1', { name: 'stylegan1', config: cpu32Config, profile: 'cpu32' });
    assert.equal(cpu32.lazyRegInterval, 16);
    assert.equal(cpu32.styleMixingProbability, 0);
    assert.equal(cpu32.r1Gamma, official.r1Gamma);
    assert.deepEqual(cpu32.discriminatorOptimizer, lazyOptimizer(official.discriminatorOptimizer, 16));
    // The task's own settings win over the profile's.
    const task = recipe(
      'stylegan1',
      { name: 'stylegan1', profile: 'cpu32' },
      { styleMixingProbability: 0.5 },
    );
    assert.equal(task.styleMixingProbability, 0.5);
    assert.equal(task.lazyRegInterval, 16);
    // StyleGAN 3 at cpu32: R1 γ 1 instead of the official 8.
    assert.equal(recipe('stylegan3', { name: 'stylegan3', profile: 'cpu32' }).r1Gamma, 1);
    assert.equal(recipe('stylegan3', { name: 'stylegan3', profile: 'paper' }).r1Gamma, 8);
  });
});
