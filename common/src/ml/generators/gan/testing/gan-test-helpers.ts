// Helpers for the GAN specs: a tiny slice store (train subjects labelled and not, a test subject) and 'gan' task
// specs for the tiny DCGAN.
import path from 'node:path';

import { SliceStoreWriter, type SliceStoreMetaInit } from '../../../../slices/slice-store.js';
import { createRng } from '../../../../util/rng.js';
import type { TrainingSpec } from '../../../training/spec.js';
import { GAN_TASK_KIND, GAN_TASK_MODULE, type GanTaskConfig } from '../gan-task.js';

import { TINY_DCGAN_MODULE } from './tiny-dcgan.js';

const LEVELS = [0, 51, 102, 204];

/** Slices of `size`²: smooth intensity blobs and a square "tumour" with annotation levels; deterministic. */
function syntheticSlices(count: number, size: number, label: string, labelled: boolean): Uint8Array {
  const out = new Uint8Array(count * size * size * 5);
  for (let n = 0; n < count; n++) {
    const rng = createRng(label).fork(n);
    const cx = rng.uniform(0.3, 0.7) * size;
    const cy = rng.uniform(0.3, 0.7) * size;
    const level = LEVELS[1 + rng.int(3)]!;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const r = Math.hypot(x - cx, y - cy) / size;
        const base = ((n * size + y) * size + x) * 5;
        for (let c = 0; c < 4; c++)
          out[base + c] = Math.max(0, Math.min(255, Math.round(220 * (1 - r) - 30 * c)));
        out[base + 4] = labelled && r < 0.15 ? level : 0;
      }
    }
  }
  return out;
}

/** A slice store at `dir`/tiny.fss: train s1 (labelled, 6), s2 (unlabelled, 2); test s3 (2). */
export async function writeTinySliceStore(dir: string, size: number): Promise<string> {
  const file = path.join(dir, 'tiny.fss');
  const init: SliceStoreMetaInit = {
    preset: 'cpu32',
    scale: 'max',
    size,
    channels: ['t1', 't2', 'flair', 't1ce', 'seg'],
    dtype: 'uint8',
    layout: 'NHWC',
    annotation: { NCR: 51, ED: 102, ET: 204 },
    split: { seed: 1, testFraction: 0.3 },
    createdAt: '2026-01-01T00:00:00.000Z',
  };
  const writer = await SliceStoreWriter.create(file, init);
  const subject = (id: string, split: 'train' | 'test', count: number, labelled: boolean) => ({
    id,
    split,
    labelled,
    z: Array.from({ length: count }, (_, i) => 60 + i),
    sourceDims: [240, 240, 155] as [number, number, number],
    reference: { t1: 1000, t2: 1000, flair: 1000, t1ce: 1000 },
  });
  await writer.addSubject(subject('s1', 'train', 6, true), syntheticSlices(6, size, 's1', true));
  await writer.addSubject(subject('s2', 'train', 2, false), syntheticSlices(2, size, 's2', false));
  await writer.addSubject(subject('s3', 'test', 2, true), syntheticSlices(2, size, 's3', true));
  await writer.close();
  return file;
}

export function ganSpec(
  store: string,
  checkpointDir: string,
  overrides: Partial<Omit<TrainingSpec<GanTaskConfig>, 'config'>> & { config?: Partial<GanTaskConfig> } = {},
): TrainingSpec<GanTaskConfig> {
  const { config, ...rest } = overrides;
  return {
    kind: GAN_TASK_KIND,
    config: {
      architecture: { name: 'tiny-dcgan', profile: 'tiny' },
      store,
      lazyRegInterval: 2,
      emaBeta: 0.9,
      ...config,
    },
    seed: 5,
    steps: 3,
    batchSize: 4,
    checkpointEvery: 0,
    checkpointDir,
    workers: 1,
    backend: 'wasm',
    taskModules: [GAN_TASK_MODULE, TINY_DCGAN_MODULE],
    ...rest,
  };
}
