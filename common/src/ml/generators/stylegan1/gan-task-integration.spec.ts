// ProGAN and StyleGAN 1 through the shared 'gan' task and the worker runtime (tiny profiles, 16² store).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../../backend/index.js';
import type { TrainingProgress } from '../../training/progress.js';
import { startTraining } from '../../training/run.js';
import { decodeWeights } from '../../weights/index.js';
import { loadGenerator } from '../gan/registry.js';
import { sampleGenerator } from '../gan/sampling.js';
import { ganSpec, writeTinySliceStore } from '../gan/testing/gan-test-helpers.js';
import { GAN_TASK_MODULE } from '../gan/gan-task.js';
import { PROGAN_PROFILES } from '../progan/index.js';
import { STYLEGAN1_PROFILES } from './index.js';

const quiet = { logger: () => {} };
const modules = [
  GAN_TASK_MODULE,
  new URL('../progan/index.js', import.meta.url).href,
  new URL('./index.js', import.meta.url).href,
];

describe("ProGAN and StyleGAN 1 in the 'gan' training task", () => {
  let dir: string;
  let store: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fedsynth-progan-'));
    store = await writeTinySliceStore(dir, 16);
    await selectBackend({ prefer: 'wasm', logger: () => {} });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('progan: WGAN-GP D and G phases while growing, flat memory, a loadable EMA generator', async () => {
    const events: TrainingProgress[] = [];
    const result = await startTraining(
      ganSpec(store, path.join(dir, 'progan'), {
        taskModules: modules,
        config: { architecture: { name: 'progan', config: { ...PROGAN_PROFILES.tiny, resolution: 16 } } },
      }),
      { ...quiet, onProgress: (p) => events.push(p) },
    ).done;
    assert.equal(result.steps, 3);
    for (const report of result.workers) assert.equal(report.tensors.atEnd, report.tensors.afterFirstStep);
    assert.deepEqual(
      events.map((p) => Object.keys(p.phases!)),
      [
        ['D', 'G'],
        ['D', 'G'],
        ['D', 'G'],
      ],
    );
    assert.ok(events.every((p) => Number.isFinite(p.loss) && p.phases!.D!.metrics.gradientPenalty! >= 0));
    const generator = loadGenerator(result.emaWeightsBlob!);
    try {
      assert.equal(generator.architecture.name, 'progan');
      const bytes = sampleGenerator(generator, { n: 2, seed: 1 });
      assert.equal(bytes.length, 2 * 16 * 16 * 5);
      assert.deepEqual(sampleGenerator(generator, { n: 2, seed: 1 }), bytes);
    } finally {
      generator.dispose();
    }
  });

  it('stylegan1 on two workers: non-saturating + R1, style mixing, w_avg tracked but not trained', async () => {
    const result = await startTraining(
      ganSpec(store, path.join(dir, 'stylegan1'), {
        taskModules: modules,
        workers: 2,
        config: {
          architecture: { name: 'stylegan1', config: { ...STYLEGAN1_PROFILES.tiny, resolution: 16 } },
          lazyRegInterval: 1,
        },
      }),
      quiet,
    ).done;
    assert.equal(result.steps, 3);
    for (const report of result.workers) assert.equal(report.tensors.atEnd, report.tensors.afterFirstStep);
    const weights = new Map(decodeWeights(result.weightsBlob).tensors.map((t) => [t.name, t.data]));
    const wAvg = weights.get('G/mapping/w_avg') ?? weights.get('mapping/w_avg');
    assert.ok(wAvg, [...weights.keys()].join(', '));
    assert.ok(
      wAvg.some((v) => v !== 0),
      'tracked during training',
    );
    const generator = loadGenerator(result.emaWeightsBlob!);
    try {
      const z = tf.randomNormal([2, generator.latentDim], 0, 1, 'float32', 1) as tf.Tensor2D;
      const images = generator.generate(z, { truncationPsi: 0.7, noiseSeed: 2 });
      assert.deepEqual(images.shape, [2, 16, 16, 5]);
      assert.ok(images.dataSync().every(Number.isFinite));
      tf.dispose([z, images]);
    } finally {
      generator.dispose();
    }
  });
});
