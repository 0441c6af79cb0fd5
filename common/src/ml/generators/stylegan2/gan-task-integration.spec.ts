// StyleGAN 2 and 3 through the shared 'gan' task and the worker runtime (tiny profiles, 16² store).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { selectBackend } from '../../backend/index.js';
import type { TrainingProgress } from '../../training/progress.js';
import { startTraining } from '../../training/run.js';
import { decodeWeights } from '../../weights/index.js';
import { GAN_TASK_MODULE } from '../gan/gan-task.js';
import { loadGenerator } from '../gan/registry.js';
import { sampleGenerator } from '../gan/sampling.js';
import { ganSpec, writeTinySliceStore } from '../gan/testing/gan-test-helpers.js';
import { STYLEGAN3_PROFILES } from '../stylegan3/index.js';
import { STYLEGAN2_PROFILES } from './index.js';

const quiet = { logger: () => {} };
const modules = [
  GAN_TASK_MODULE,
  new URL('./index.js', import.meta.url).href,
  new URL('../stylegan3/index.js', import.meta.url).href,
];

describe("StyleGAN 2 and 3 in the 'gan' training task", () => {
  let dir: string;
  let store: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fedsynth-stylegan-'));
    store = await writeTinySliceStore(dir, 16);
    await selectBackend({ prefer: 'wasm', logger: () => {} });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('stylegan2 on two workers: D, lazy R1, G, path length, style mixing; flat memory; a loadable EMA generator', async () => {
    const events: TrainingProgress[] = [];
    const result = await startTraining(
      ganSpec(store, path.join(dir, 'stylegan2'), {
        taskModules: modules,
        workers: 2,
        config: { architecture: { name: 'stylegan2', config: STYLEGAN2_PROFILES.tiny }, lazyRegInterval: 2 },
      }),
      { ...quiet, onProgress: (p) => events.push(p) },
    ).done;
    assert.equal(result.steps, 3);
    for (const report of result.workers) assert.equal(report.tensors.atEnd, report.tensors.afterFirstStep);
    // R1 every 2 steps (0, 2), path length every 4 (step 0).
    assert.deepEqual(
      events.map((p) => Object.keys(p.phases!)),
      [
        ['D', 'Dreg', 'G', 'Greg'],
        ['D', 'G'],
        ['D', 'Dreg', 'G'],
      ],
    );
    assert.ok(events.every((p) => Number.isFinite(p.loss)));
    assert.ok(events[0]!.phases!.Dreg!.metrics.gradNormSq! > 0);
    assert.ok(events[0]!.phases!.Greg!.metrics.pathLength! > 0);
    const weights = new Map(decodeWeights(result.weightsBlob).tensors.map((t) => [t.name, t.data]));
    assert.ok(
      weights.get('G/mapping/w_avg')!.some((v) => v !== 0),
      'w̄ tracked during training',
    );
    const generator = loadGenerator(result.emaWeightsBlob!);
    try {
      assert.equal(generator.architecture.name, 'stylegan2');
      const bytes = sampleGenerator(generator, { n: 3, seed: 1, truncationPsi: 0.7 });
      assert.equal(bytes.length, 3 * 16 * 16 * 5);
      assert.deepEqual(sampleGenerator(generator, { n: 3, seed: 1, truncationPsi: 0.7 }), bytes);
    } finally {
      generator.dispose();
    }
  });

  it('stylegan3: D, lazy R1, G (no path length); flat memory; a loadable EMA generator', async () => {
    const events: TrainingProgress[] = [];
    const result = await startTraining(
      ganSpec(store, path.join(dir, 'stylegan3'), {
        taskModules: modules,
        config: { architecture: { name: 'stylegan3', config: STYLEGAN3_PROFILES.tiny }, lazyRegInterval: 2 },
      }),
      { ...quiet, onProgress: (p) => events.push(p) },
    ).done;
    assert.equal(result.steps, 3);
    for (const report of result.workers) assert.equal(report.tensors.atEnd, report.tensors.afterFirstStep);
    assert.deepEqual(
      events.map((p) => Object.keys(p.phases!)),
      [
        ['D', 'Dreg', 'G'],
        ['D', 'G'],
        ['D', 'Dreg', 'G'],
      ],
    );
    assert.ok(events.every((p) => Number.isFinite(p.loss)));
    const weights = new Map(decodeWeights(result.weightsBlob).tensors.map((t) => [t.name, t.data]));
    assert.ok(weights.get('G/synthesis/L0_36_16/magnitude_ema')![0] !== 1, 'input magnitudes tracked');
    const generator = loadGenerator(result.emaWeightsBlob!);
    try {
      assert.equal(generator.architecture.name, 'stylegan3');
      const bytes = sampleGenerator(generator, { n: 2, seed: 4 });
      assert.equal(bytes.length, 2 * 16 * 16 * 5);
      assert.deepEqual(sampleGenerator(generator, { n: 2, seed: 4 }), bytes);
    } finally {
      generator.dispose();
    }
  });
});
