// A run that is one part of a longer schedule (a FedAvg round: stepOffset = round·localSteps, totalSteps =
// rounds·localSteps): schedules (learning rate, progressive growing) follow the global position while the run's
// own steps, checkpoints and random streams stay its own.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../backend/index.js';
import { GAN_TASK_KIND, GAN_TASK_MODULE, type GanTaskConfig } from '../generators/gan/gan-task.js';
import { ganArchitecture, ganConfig } from '../generators/gan/registry.js';
import { writeTinySliceStore } from '../generators/gan/testing/gan-test-helpers.js';
import { growthAt, growthLevels, type GrowthSchedule } from '../generators/progan/growth.js';
import { decodeWeights } from '../weights/index.js';

import { learningRateAt, type OptimizerSpec } from './optimizers.js';
import type { TrainingProgress } from './progress.js';
import { startTraining } from './run.js';
import { TrainingSpecError, trainingSpecHash, validateTrainingSpec, type TrainingSpec } from './spec.js';
import { removeTempDirs, toySpec } from './testing/training-test-helpers.js';

const quiet = { logger: () => {} };
const PROGAN_MODULE = new URL('../generators/progan/index.js', import.meta.url).href;

describe('a run as a part of a longer schedule (stepOffset, totalSteps)', () => {
  let dir: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fedsynth-schedule-'));
    await selectBackend({ prefer: 'wasm', logger: () => {} });
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    removeTempDirs();
  });

  it('validates the offset and total, and hashes them only when set', () => {
    assert.throws(() => validateTrainingSpec(toySpec({ stepOffset: -1 })), TrainingSpecError);
    assert.throws(
      () => validateTrainingSpec(toySpec({ steps: 6, stepOffset: 4, totalSteps: 9 })),
      /totalSteps 9 ends before stepOffset \+ steps \(10\)/,
    );
    validateTrainingSpec(toySpec({ steps: 6, stepOffset: 4, totalSteps: 10 }));
    const plain = toySpec({ checkpointDir: '/tmp/x' });
    assert.equal(trainingSpecHash(plain), trainingSpecHash({ ...plain, stepOffset: undefined }));
    assert.notEqual(trainingSpecHash(plain), trainingSpecHash({ ...plain, stepOffset: 6, totalSteps: 12 }));
  });

  it("the learning rate of each step is the long run's at the same global step", async () => {
    const optimizer: OptimizerSpec = {
      type: 'sgd',
      lr: 0.1,
      schedule: { type: 'poly', power: 1, warmupSteps: 2, warmupRatio: 0.1 },
    };
    const lrs = async (spec: Partial<TrainingSpec>) => {
      const seen: TrainingProgress[] = [];
      await startTraining(toySpec({ optimizer, ...spec }), { ...quiet, onProgress: (p) => seen.push(p) })
        .done;
      return seen.map((p) => p.lr);
    };
    const long = await lrs({ steps: 6 });
    const round = await lrs({ steps: 2, stepOffset: 3, totalSteps: 6 });
    assert.deepEqual(round, long.slice(3, 5));
    assert.deepEqual(round, [learningRateAt(optimizer, 3, 6), learningRateAt(optimizer, 4, 6)]);
    // without the offset a 2-step run warms up and decays on its own
    assert.notDeepEqual(await lrs({ steps: 2 }), round);
  });

  it("ProGAN at the first step of round r grows to the long run's level at that step", async () => {
    const store = await writeTinySliceStore(dir, 32);
    await import(PROGAN_MODULE);
    const config = ganConfig('progan', { profile: 'tiny' });
    const levels = growthLevels(config.resolution as number);
    const schedule = config.growth as GrowthSchedule;
    const [rounds, localSteps, round, batchSize, seed] = [7, 2, 4, 2, 3];
    // The long run (rounds·localSteps steps) at the round's first step: 16² stable.
    const expected = growthAt(schedule, levels, {
      step: round * localSteps,
      totalSteps: rounds * localSteps,
      imagesSeen: round * localSteps * batchSize,
    });
    assert.deepEqual(expected, { level: 2, alpha: 1 });

    // Oracle: the generator variables the output depends on at a growth state (nonzero gradient).
    const { generator, discriminator } = ganArchitecture('progan').build(config, seed);
    const initial = new Map(Object.entries(generator.variables).map(([n, v]) => [n, v.dataSync().slice()]));
    const used = (state: { level: number; alpha: number }) => {
      (generator as unknown as { setGrowth(s: typeof state): void }).setGrowth(state);
      const names = Object.keys(generator.variables);
      const { grads, value } = tf.variableGrads(
        () => tf.sum(generator.generate(tf.randomNormal([2, generator.latentDim], 0, 1, 'float32', 1))),
        names.map((n) => generator.variables[n]!),
      );
      const out = names.filter((n) => {
        const g = grads[generator.variables[n]!.name] as tf.Tensor | null | undefined;
        return g != null && g.dataSync().some((v) => v !== 0);
      });
      tf.dispose([value, ...Object.values(grads).filter((g): g is tf.Tensor => g != null)]);
      return out.sort();
    };
    const atLevel2 = used(expected);
    const atLevel0 = used({ level: 0, alpha: 1 });
    generator.dispose();
    discriminator.dispose();
    assert.notDeepEqual(atLevel2, atLevel0);

    const changedBy = async (spec: Partial<TrainingSpec<GanTaskConfig>>) => {
      const result = await startTraining<GanTaskConfig>(
        {
          kind: GAN_TASK_KIND,
          config: { architecture: { name: 'progan', profile: 'tiny' }, store, subjects: 'labelled' },
          seed,
          steps: 1,
          batchSize,
          checkpointEvery: 0,
          checkpointDir: mkdtempSync(path.join(dir, 'run-')),
          workers: 1,
          backend: 'wasm',
          taskModules: [GAN_TASK_MODULE, PROGAN_MODULE],
          ...spec,
        },
        quiet,
      ).done;
      return decodeWeights(result.weightsBlob)
        .tensors.filter((t) => t.name.startsWith('G/'))
        .filter((t) => t.data.some((v, i) => v !== initial.get(t.name.slice(2))![i]))
        .map((t) => t.name.slice(2))
        .sort();
    };
    assert.deepEqual(
      await changedBy({ stepOffset: round * localSteps, totalSteps: rounds * localSteps }),
      atLevel2,
    );
    // A round scheduled on its own starts at 4×4 again (what the offset fixes).
    assert.deepEqual(await changedBy({}), atLevel0);
  });
});
