// The training job description: a plain, structured-clone-able object that crosses into every worker thread,
// is hashed into each checkpoint (so a resume never continues a different job) and names the task by registry key.
import { createHash } from 'node:crypto';
import path from 'node:path';

import type { BackendPreference } from '../backend/index.js';
import { canonicalJson } from '../weights/index.js';

import type { OptimizerSpec } from './optimizers.js';

export interface TrainingSpec<Config extends object = Record<string, unknown>> {
  /** Registry key of the task (see registerTrainingTask), e.g. 'segmenter'. */
  kind: string;
  /** The task's own configuration (architecture, data location, loss, ...); must survive structuredClone. */
  config: Config;
  /** Every random choice of the run derives from (seed, step, worker): init, batch sampling, augmentation. */
  seed: number;
  /** Total optimizer steps of the job (a resumed run continues up to this). */
  steps: number;
  /** Global batch: images per step summed over all workers (worker w gets its part, see batchPartition). */
  batchSize: number;
  /** Write a checkpoint after every this many steps; 0 = only the final one. */
  checkpointEvery: number;
  checkpointDir: string;
  /** Data-parallel worker threads (each a full replica). */
  workers: number;
  /** tfjs backend each worker selects (default 'auto': tfjs-node-gpu -> tfjs-node -> wasm). */
  backend?: BackendPreference;
  /** Absolute file: URLs of modules that register tasks; each worker imports them before looking up `kind`. */
  taskModules?: string[];
  /** Overrides the optimizer the task proposes. */
  optimizer?: OptimizerSpec;
  /**
   * Where this run sits in a longer schedule (FedAvg: round r of R rounds of `steps` each has stepOffset r·steps,
   * totalSteps R·steps). Only what schedules see moves: the task's `step` and `totalSteps`, lazy phases, learning
   * rates and the EMA ramp-up use stepOffset + step out of totalSteps; the run itself (its steps, checkpoints,
   * resume, random streams) stays 0 .. steps. Default 0 and `steps`.
   */
  stepOffset?: number;
  totalSteps?: number;
}

/** The schedule position of the run's 0-based `step` (see TrainingSpec.stepOffset). */
export function scheduleStep(spec: Pick<TrainingSpec<object>, 'stepOffset'>, step: number): number {
  return (spec.stepOffset ?? 0) + step;
}

/** The schedule's length (see TrainingSpec.totalSteps). */
export function scheduleTotalSteps(spec: Pick<TrainingSpec<object>, 'steps' | 'totalSteps'>): number {
  return spec.totalSteps ?? spec.steps;
}

export class TrainingSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingSpecError';
  }
}

function isPositiveInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

/** Throws a TrainingSpecError listing every problem of the spec. */
export function validateTrainingSpec(spec: TrainingSpec<object>): void {
  const problems: string[] = [];
  if (typeof spec !== 'object' || spec === null) throw new TrainingSpecError('training spec: not an object');
  if (typeof spec.kind !== 'string' || spec.kind.trim() === '')
    problems.push('kind must be a non-empty string');
  if (typeof spec.config !== 'object' || spec.config === null || Array.isArray(spec.config)) {
    problems.push('config must be an object');
  }
  if (!Number.isSafeInteger(spec.seed)) problems.push(`seed must be a safe integer (got ${spec.seed})`);
  if (!isPositiveInteger(spec.steps)) problems.push(`steps must be a positive integer (got ${spec.steps})`);
  if (!isPositiveInteger(spec.workers))
    problems.push(`workers must be a positive integer (got ${spec.workers})`);
  if (!isPositiveInteger(spec.batchSize)) {
    problems.push(`batchSize must be a positive integer (got ${spec.batchSize})`);
  } else if (isPositiveInteger(spec.workers) && spec.batchSize < spec.workers) {
    problems.push(
      `batchSize ${spec.batchSize} is smaller than workers ${spec.workers}: a worker would be idle`,
    );
  }
  if (spec.stepOffset !== undefined && !(Number.isSafeInteger(spec.stepOffset) && spec.stepOffset >= 0)) {
    problems.push(`stepOffset must be an integer >= 0 (got ${spec.stepOffset})`);
  }
  if (spec.totalSteps !== undefined) {
    const end = (spec.stepOffset ?? 0) + spec.steps;
    if (!isPositiveInteger(spec.totalSteps)) {
      problems.push(`totalSteps must be a positive integer (got ${spec.totalSteps})`);
    } else if (Number.isSafeInteger(end) && spec.totalSteps < end) {
      problems.push(`totalSteps ${spec.totalSteps} ends before stepOffset + steps (${end})`);
    }
  }
  if (!Number.isSafeInteger(spec.checkpointEvery) || spec.checkpointEvery < 0) {
    problems.push(`checkpointEvery must be an integer >= 0 (got ${spec.checkpointEvery})`);
  }
  if (typeof spec.checkpointDir !== 'string' || !path.isAbsolute(spec.checkpointDir)) {
    problems.push('checkpointDir must be an absolute path');
  }
  if (spec.taskModules !== undefined) {
    if (!Array.isArray(spec.taskModules)) problems.push('taskModules must be an array of file: URLs');
    else {
      for (const url of spec.taskModules) {
        if (typeof url !== 'string' || !url.startsWith('file:')) {
          problems.push(`task module ${JSON.stringify(url)} is not an absolute file: URL`);
        }
      }
    }
  }
  if (problems.length === 0) {
    try {
      structuredClone(spec);
    } catch (error) {
      problems.push(`the spec cannot be sent to a worker (structuredClone: ${(error as Error).message})`);
    }
  }
  if (problems.length > 0) throw new TrainingSpecError(`training spec: ${problems.join('; ')}`);
}

/**
 * Identifies the computation a spec describes: everything that changes the weights a step produces. Checkpoint
 * paths, the backend and the task module locations are excluded (a job may move machines and still resume).
 */
export function trainingSpecHash(spec: TrainingSpec<object>): string {
  const identity = {
    kind: spec.kind,
    config: spec.config,
    seed: spec.seed,
    steps: spec.steps,
    batchSize: spec.batchSize,
    workers: spec.workers,
    optimizer: spec.optimizer ?? null,
    // Only when set, so runs without an offset keep the hashes (and resumable checkpoints) they had.
    ...((spec.stepOffset !== undefined || spec.totalSteps !== undefined) && {
      schedule: { stepOffset: scheduleStep(spec, 0), totalSteps: scheduleTotalSteps(spec) },
    }),
  };
  return createHash('sha256').update(canonicalJson(identity)).digest('hex');
}

export interface BatchPart {
  /** This worker's first image within the global batch. */
  offset: number;
  /** Images this worker computes per step. */
  count: number;
  globalSize: number;
}

/** Splits the global batch over the workers as evenly as possible, in worker order (the first ones get more). */
export function batchPartition(batchSize: number, workers: number, workerIndex: number): BatchPart {
  const base = Math.floor(batchSize / workers);
  const extra = batchSize % workers;
  const count = base + (workerIndex < extra ? 1 : 0);
  const offset = workerIndex * base + Math.min(workerIndex, extra);
  return { offset, count, globalSize: batchSize };
}
