// Helpers for the training runtime's specs: toy specs in temporary checkpoint folders, a worker factory that
// records whether every spawned thread ended, and weight comparisons.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { decodeWeights, type WeightTensor } from '../../weights/index.js';
import type { WorkerInit } from '../protocol.js';
import { ThreadWorkerFactory, type TrainingWorkerHandle, type WorkerFactory } from '../run.js';
import type { TrainingSpec } from '../spec.js';

import {
  TOY_FAULT_ENV,
  TOY_TASK_KIND,
  TOY_TASK_MODULE,
  type ToyConfig,
  type ToyFaultMode,
} from './toy-task.js';

const made: string[] = [];

export function tempCheckpointDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedsynth-training-'));
  made.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function toySpec(
  overrides: Partial<Omit<TrainingSpec<ToyConfig>, 'config'>> & { config?: ToyConfig } = {},
): TrainingSpec<ToyConfig> {
  return {
    kind: TOY_TASK_KIND,
    config: {},
    seed: 7,
    steps: 6,
    batchSize: 4,
    checkpointEvery: 0,
    checkpointDir: overrides.checkpointDir ?? tempCheckpointDir(),
    workers: 1,
    backend: 'wasm',
    taskModules: [TOY_TASK_MODULE],
    ...overrides,
  };
}

/** Spawns real workers (optionally with a toy fault in their env) and records each thread's end. */
export class RecordingWorkerFactory implements WorkerFactory {
  readonly spawned: { worker: number; exited: boolean; exitCode?: number }[] = [];
  private readonly inner: ThreadWorkerFactory;

  constructor(fault?: { worker: number; step: number; mode: ToyFaultMode }) {
    this.inner = new ThreadWorkerFactory(
      fault ? { env: { ...process.env, [TOY_FAULT_ENV]: JSON.stringify(fault) } } : {},
    );
  }

  spawn(init: WorkerInit): TrainingWorkerHandle {
    const record: { worker: number; exited: boolean; exitCode?: number } = {
      worker: init.workerIndex,
      exited: false,
    };
    this.spawned.push(record);
    const handle = this.inner.spawn(init);
    handle.onExit((code) => {
      record.exited = true;
      record.exitCode = code;
    });
    return handle;
  }

  get allExited(): boolean {
    return this.spawned.length > 0 && this.spawned.every((record) => record.exited);
  }
}

export function tensorsOf(blob: Uint8Array): WeightTensor[] {
  return decodeWeights(blob).tensors;
}

/** Largest absolute difference between two weight sets with the same names and shapes. */
export function maxAbsDifference(a: readonly WeightTensor[], b: readonly WeightTensor[]): number {
  if (a.length !== b.length) throw new Error('different tensor counts');
  let max = 0;
  a.forEach((tensor, index) => {
    const other = b[index];
    if (tensor.name !== other.name || tensor.data.length !== other.data.length) {
      throw new Error(`tensor ${tensor.name} does not match ${other.name}`);
    }
    for (let i = 0; i < tensor.data.length; i++)
      max = Math.max(max, Math.abs(tensor.data[i] - other.data[i]));
  });
  return max;
}

export function collectingLogger(): { lines: string[]; log: (message: string) => void } {
  const lines: string[] = [];
  return { lines, log: (message) => lines.push(message) };
}
