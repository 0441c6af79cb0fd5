// The 'ddpm' training task: its data path in this process, and a short run through the training runtime (a
// real worker thread on wasm) on a slice store written here.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { SliceStoreWriter } from '../../../slices/slice-store.js';
import { createRng } from '../../../util/rng.js';
import { createOptimizer } from '../../training/optimizers.js';
import type { StepBatch, TaskContext } from '../../training/registry.js';
import { startTraining } from '../../training/run.js';
import type { TrainingSpec } from '../../training/spec.js';
import { assignWeights, decodeWeights } from '../../weights/index.js';
import { buildDdpmFromArchitecture, ddpmArchitecture, sampleDdpm } from './ddpm.js';
import {
  DDPM_TASK_KIND,
  DDPM_TASK_MODULE,
  DdpmTask,
  slicesToImages,
  type DdpmTaskConfig,
} from './ddpm-task.js';
import { useWasm } from './ddpm-spec-helpers.js';

const SIZE = 16;
const SLICE_BYTES = SIZE * SIZE * 5;

/** Slices with a bright ellipse and a labelled disc; `seed` varies the positions. */
function slices(count: number, seed: string): Uint8Array {
  const rng = createRng(seed);
  const out = new Uint8Array(count * SLICE_BYTES);
  for (let n = 0; n < count; n++) {
    const cx = rng.uniform(5, 11);
    const cy = rng.uniform(5, 11);
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const p = (n * SIZE * SIZE + y * SIZE + x) * 5;
        const brain = ((x - 7.5) / 6) ** 2 + ((y - 7.5) / 7) ** 2 < 1;
        const tumour = brain && (x - cx) ** 2 + (y - cy) ** 2 < 6;
        for (let c = 0; c < 4; c++) out[p + c] = brain ? 80 + 30 * c + (tumour ? 60 : 0) : 0;
        out[p + 4] = tumour ? (x < cx ? 204 : 102) : 0;
      }
    }
  }
  return out;
}

async function writeStore(file: string): Promise<void> {
  const writer = await SliceStoreWriter.create(file, {
    preset: 'cpu32',
    scale: 'max',
    size: SIZE,
    channels: ['t1', 't2', 'flair', 't1ce', 'seg'],
    dtype: 'uint8',
    layout: 'NHWC',
    annotation: { NCR: 51, ED: 102, ET: 204 },
    split: { seed: 1, testFraction: 0.25 },
    createdAt: '2026-01-01T00:00:00.000Z',
  });
  const subject = (id: string, split: 'train' | 'test', count: number, labelled = true) => ({
    id,
    split,
    labelled,
    z: Array.from({ length: count }, (_, i) => 60 + i),
    sourceDims: [240, 240, 155] as [number, number, number],
    reference: { t1: 1000, t2: 1000, flair: 1000, t1ce: 1000 },
  });
  await writer.addSubject(subject('a', 'train', 3), slices(3, 'a'));
  await writer.addSubject(subject('b', 'test', 2), slices(2, 'b'));
  await writer.addSubject(subject('c', 'train', 2, false), slices(2, 'c'));
  await writer.addSubject(subject('d', 'train', 3), slices(3, 'd'));
  await writer.close();
}

const context: TaskContext = { workerIndex: 0, workerCount: 1, initRng: createRng(0), log: () => {} };

function taskSpec(dir: string, config: Partial<DdpmTaskConfig> = {}): TrainingSpec<DdpmTaskConfig> {
  return {
    kind: DDPM_TASK_KIND,
    config: { architecture: ddpmArchitecture('tiny'), store: path.join(dir, 'store.fss'), ...config },
    seed: 1,
    steps: 3,
    batchSize: 4,
    checkpointEvery: 0,
    checkpointDir: path.join(dir, 'run'),
    workers: 1,
    backend: 'wasm',
    taskModules: [DDPM_TASK_MODULE],
  };
}

function stepBatch(seed: number, offset: number, count: number, globalSize: number): StepBatch {
  const sharedRng = createRng(seed);
  return { offset, count, globalSize, sharedRng, stepSharedRng: sharedRng } as StepBatch;
}

describe('ddpm task', () => {
  let dir: string;
  before(async () => {
    await useWasm();
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-ddpm-'));
    await writeStore(path.join(dir, 'store.fss'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('scales bytes to [-1, 1] and mirrors left-right per image', () => {
    // Two images of 2×2 pixels with 3 channels.
    const data = Uint8Array.from({ length: 24 }, (_, i) => i * 10);
    const images = slicesToImages(data, 2, 2, 3, [false, true]);
    const byte = (value: number) => Math.round((value + 1) * 127.5);
    // image 0 unchanged
    assert.deepEqual([...images.subarray(0, 12)].map(byte), [...data.subarray(0, 12)]);
    // image 1: pixels (y, 0) <-> (y, 1)
    const mirrored = [...images.subarray(12)].map(byte);
    assert.deepEqual(mirrored, [150, 160, 170, 120, 130, 140, 210, 220, 230, 180, 190, 200]);
  });

  it('trains on the labelled train slices with the task’s Adam; tensors stay flat', async () => {
    const task = new DdpmTask();
    const init = await task.init(taskSpec(dir), context);
    await task.loadShard();
    const optimizer = createOptimizer(init.optimizer!, init.model.variables);
    after(() => {
      optimizer.dispose();
      init.model.dispose();
      task.dispose();
    });
    assert.deepEqual(init.optimizer, {
      type: 'adamw',
      lr: 1e-4,
      beta1: 0.9,
      beta2: 0.999,
      epsilon: 1e-8,
      weightDecay: 0,
      schedule: { type: 'constant', warmupSteps: 0, warmupRatio: 0 },
      clipNorm: 1,
    });
    const counts: number[] = [];
    for (let step = 0; step < 3; step++) {
      const { loss, grads, images } = await task.computeLossAndGrads(
        step,
        createRng(step),
        stepBatch(step, 0, 4, 4),
      );
      assert.equal(images, 4);
      assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
      optimizer.apply(grads, 1e-4);
      tf.dispose(Object.values(grads));
      counts.push(tf.memory().numTensors);
    }
    assert.equal(new Set(counts).size, 1, `tensor counts ${counts}`);

    // A global batch split over two workers gives the same images, so the image-weighted mean gradient
    // matches.
    const whole = await task.computeLossAndGrads(9, createRng(1), stepBatch(9, 0, 4, 4));
    const first = await task.computeLossAndGrads(9, createRng(2), stepBatch(9, 0, 1, 4));
    const rest = await task.computeLossAndGrads(9, createRng(3), stepBatch(9, 1, 3, 4));
    assert.ok(Math.abs(whole.loss - (first.loss + 3 * rest.loss) / 4) < 1e-5, 'loss of the split batch');
    tf.dispose([...Object.values(whole.grads), ...Object.values(first.grads), ...Object.values(rest.grads)]);
  });

  it('refuses a store of another size', async () => {
    const wrongSize = new DdpmTask();
    const built = await wrongSize.init(
      taskSpec(dir, {
        architecture: ddpmArchitecture('tiny', { imageSize: 32, attentionResolutions: [16] }),
      }),
      context,
    );
    after(() => built.model.dispose());
    await assert.rejects(wrongSize.loadShard(), /slices are 16² but the ddpm architecture expects 32²/);
    wrongSize.dispose();
  });

  it('runs through the training runtime (1 worker, 3 steps); its weights sample valid slices', async () => {
    const result = await startTraining(taskSpec(dir, { mirror: true, ema: 0.9 }), { logger: () => {} }).done;
    assert.equal(result.steps, 3);
    assert.equal(result.losses.length, 3);
    assert.ok(
      result.losses.every((loss) => Number.isFinite(loss) && loss > 0),
      `losses ${result.losses}`,
    );
    assert.equal(result.architecture.name, 'ddpm');
    for (const report of result.workers) {
      assert.equal(report.tensors.atEnd, report.tensors.afterFirstStep, JSON.stringify(report.tensors));
    }
    // The weights and the runtime's EMA of them both load into a model rebuilt from their architecture.
    for (const blob of [result.weightsBlob, result.emaWeightsBlob!]) {
      const decoded = decodeWeights(blob);
      const model = buildDdpmFromArchitecture(decoded.manifest.architecture);
      after(() => model.dispose());
      assignWeights(model.variables, decoded.tensors);
      const bytes = await sampleDdpm(model, { count: 2, seed: 1, sampler: { method: 'ddim', steps: 4 } });
      assert.equal(bytes.length, 2 * SLICE_BYTES);
      assert.ok(bytes.every((b, i) => i % 5 !== 4 || [0, 51, 102, 204].includes(b)));
    }
    assert.notDeepEqual(result.emaWeightsBlob, result.weightsBlob);
  });
});
