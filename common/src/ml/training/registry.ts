// The task registry: what a training worker can train. A task module (the segmenter, later the GANs and the
// diffusion model) calls registerTrainingTask at import time; the worker imports the spec's taskModules, then looks
// the spec's kind up here. The runtime therefore has no compile-time dependency on any model.
import type * as tf from '@tensorflow/tfjs';

import type { Rng } from '../../util/rng.js';
import type { TrainableModel } from '../model.js';

import type { OptimizerSpec } from './optimizers.js';
import type { BatchPart, TrainingSpec } from './spec.js';

export interface TaskContext {
  workerIndex: number;
  workerCount: number;
  /**
   * The same stream in every worker (derived from the seed only): draw initial weights from it, so every replica
   * starts identical (the runtime checks a checksum before the first step).
   */
  initRng: Rng;
  /** Log lines reach the main thread's logger, prefixed with the worker. */
  log(message: string): void;
}

export interface TaskInit {
  /** The replica. Its variables are trained (all of them; a gradient the task leaves out counts as zero). */
  model: TrainableModel;
  /** The optimizer the task wants (spec.optimizer overrides it). */
  optimizer: OptimizerSpec;
}

export interface StepBatch extends BatchPart {
  /**
   * Identical in every worker for this step (derived from seed and step): to draw one global batch of
   * globalSize and take [offset, offset + count) of it, which makes the run independent of the worker count.
   */
  sharedRng: Rng;
}

export interface LossAndGrads {
  /** Mean loss over this worker's images. */
  loss: number;
  /** Gradients of that mean loss by variable name; the runtime disposes them. */
  grads: Record<string, tf.Tensor>;
  /** Images behind the loss; workers' gradients are averaged weighted by it. */
  images: number;
}

export interface TrainingTask<Config extends object = Record<string, unknown>> {
  /** Builds the replica (called once per worker, after backend selection). */
  init(spec: TrainingSpec<Config>, ctx: TaskContext): TaskInit | Promise<TaskInit>;
  /** Loads this worker's part of the data (after init; a resumed run calls it too). */
  loadShard(workerIndex: number, workerCount: number): void | Promise<void>;
  /**
   * Samples this worker's batch and returns the loss and gradients. `rng` is derived from (seed, step, worker), so
   * a resumed run draws exactly what an uninterrupted one would. Must not keep tensors across steps.
   */
  computeLossAndGrads(step: number, rng: Rng, batch: StepBatch): LossAndGrads | Promise<LossAndGrads>;
  /** Frees the task's own tensors (the runtime disposes the model). */
  dispose?(): void;
}

export type TrainingTaskFactory<Config extends object = Record<string, unknown>> = () => TrainingTask<Config>;

// On globalThis under a registered symbol, so a task module that reaches this file through another path (a second
// copy of the module graph) still registers with the same table.
const REGISTRY_KEY = Symbol.for('fedsynth.training.tasks');

function registry(): Map<string, TrainingTaskFactory<object>> {
  const holder = globalThis as { [REGISTRY_KEY]?: Map<string, TrainingTaskFactory<object>> };
  holder[REGISTRY_KEY] ??= new Map();
  return holder[REGISTRY_KEY];
}

/** Registers a task kind. Registering the same factory again is harmless; a different one for a taken kind throws. */
export function registerTrainingTask<Config extends object>(
  kind: string,
  factory: TrainingTaskFactory<Config>,
): void {
  if (typeof kind !== 'string' || kind.trim() === '') throw new Error('registerTrainingTask: empty kind');
  const existing = registry().get(kind);
  if (existing !== undefined && existing !== factory) {
    throw new Error(`registerTrainingTask: task kind '${kind}' is already registered by another factory`);
  }
  registry().set(kind, factory as TrainingTaskFactory<object>);
}

export function registeredTrainingTasks(): string[] {
  return [...registry().keys()].sort();
}

/** Creates a task instance of `kind`; the error lists the registered kinds and the modules that were imported. */
export function createTrainingTask(
  kind: string,
  importedModules: readonly string[] = [],
): TrainingTask<object> {
  const factory = registry().get(kind);
  if (factory === undefined) {
    const known = registeredTrainingTasks();
    throw new Error(
      `unknown training task kind '${kind}' (registered: ${known.length > 0 ? known.join(', ') : 'none'}; ` +
        `task modules imported: ${importedModules.length > 0 ? importedModules.join(', ') : 'none'})`,
    );
  }
  return factory();
}
