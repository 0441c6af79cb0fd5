// What every "train a model on a site's slices" job shares: the output folder, the slice store (sliced from a data
// folder with the model's preset when needed), the training run in worker threads, and the card's common fields.
// The segmenter and generator jobs differ only in the task they start and the files they write.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { BackendPreference } from '../backend/index.js';
import type { ModelArchitecture } from '../model.js';
import { startTraining, type TrainingProgress, type TrainingResult } from '../training/index.js';
import { modelInputSize, resolveSliceStore, trainingSetOf } from './job-files.js';

export interface TrainingJobOptions {
  /** slice store, or folder of BraTS cases */
  data: string;
  out: string;
  steps: number;
  batchSize?: number;
  workers?: number;
  seed?: number;
  checkpointEvery?: number;
  resume?: boolean;
  backend?: BackendPreference;
  signal?: AbortSignal;
  /** wall-clock budget: training stops after the step in progress once it is spent (a checkpoint is kept) */
  maxSeconds?: number;
  onProgress?: (progress: TrainingProgress) => void;
  log?: (line: string) => void;
  /** start from these weights (fedsynth-weights blob of the model's architecture) with a fresh optimizer */
  initialWeights?: Uint8Array;
  /** the EMA shadows to start from (models that keep one); default: a copy of initialWeights */
  initialEma?: Uint8Array;
  /**
   * This run as part of a longer schedule (a FedAvg round): growth, EMA ramp-up and learning-rate schedules see
   * stepOffset + step out of totalSteps (see TrainingSpec.stepOffset); checkpoints and resume stay per run.
   */
  schedule?: { stepOffset: number; totalSteps: number };
}

/** The fields every model card carries. */
export interface TrainedModelFacts {
  architecture: ModelArchitecture;
  trainedOn: { store: string; trainSubjects: number; trainSlices: number };
  steps: number;
  batchSize: number;
  workers: number;
  seed: number;
  finalLoss: number;
  losses: number[];
  trainingSeconds: number;
  backend: TrainingResult['backend'];
  cancelled: boolean;
  /** the run stopped because its time budget (maxSeconds) was spent */
  timeLimitReached: boolean;
}

export interface TrainingTaskChoice {
  kind: string;
  config: object;
  taskModules: string[];
}

export async function runTrainingJob(
  options: TrainingJobOptions,
  architecture: ModelArchitecture,
  task: (store: string) => TrainingTaskChoice,
): Promise<{ dir: string; result: TrainingResult; facts: TrainedModelFacts }> {
  const dir = path.resolve(options.out);
  await mkdir(dir, { recursive: true });
  const seed = options.seed ?? 1;
  const store = await resolveSliceStore(
    options.data,
    modelInputSize(architecture),
    path.join(dir, 'slices.fss'),
    {
      seed,
      log: options.log,
    },
  );
  const trainedOn = await trainingSetOf(store);
  const workers = options.workers ?? 2;
  const batchSize = options.batchSize ?? 8;
  const timeLimit =
    options.maxSeconds !== undefined ? AbortSignal.timeout(options.maxSeconds * 1000) : undefined;
  const signals = [options.signal, timeLimit].filter((s): s is AbortSignal => s !== undefined);
  const run = startTraining<object>(
    {
      ...task(store),
      seed,
      steps: options.steps,
      batchSize,
      checkpointEvery: options.checkpointEvery ?? 100,
      checkpointDir: path.join(dir, 'checkpoints'),
      workers,
      backend: options.backend,
      ...(options.schedule && {
        stepOffset: options.schedule.stepOffset,
        totalSteps: options.schedule.totalSteps,
      }),
    },
    {
      onProgress: options.onProgress,
      signal: signals.length ? AbortSignal.any(signals) : undefined,
      resume: options.resume,
      logger: options.log,
      ...(options.initialWeights && { initialWeights: options.initialWeights }),
      ...(options.initialEma && { initialEma: options.initialEma }),
    },
  );
  const result = await run.done;
  return {
    dir,
    result,
    facts: {
      architecture,
      trainedOn,
      steps: result.steps,
      batchSize,
      workers,
      seed,
      finalLoss: result.finalLoss,
      losses: result.losses,
      trainingSeconds: result.totalElapsedMs / 1000,
      backend: result.backend,
      cancelled: result.cancelled,
      timeLimitReached: result.cancelled && timeLimit?.aborted === true && options.signal?.aborted !== true,
    },
  };
}
