// The two things one does with a segmenter outside a federation: train it on a slice store (or a data folder,
// sliced on the way) in worker threads, and measure it on held-out real subjects. The CLI and the coordinator
// both call these.
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { buildSliceStore } from '../../slices/slice-pipeline.js';
import { SliceStoreReader } from '../../slices/slice-store.js';
import type { SlicePresetName } from '../../slices/presets.js';
import type { Split } from '../../slices/subject-split.js';
import { selectBackend, type BackendPreference } from '../backend/index.js';
import { evaluateSegmenter, type EvaluationResult } from '../evaluation/segmenter-evaluation.js';
import type { ModelArchitecture } from '../model.js';
import {
  buildSegmenter,
  segmenterArchitecture,
  type SegmenterName,
  type SegmenterProfile,
} from '../segmentation/segmenters.js';
import {
  SEGMENTER_TASK_KIND,
  SEGMENTER_TASK_MODULE,
  type SegmenterTaskConfig,
} from '../segmentation/segmenter-task.js';
import { startTraining, type TrainingProgress, type TrainingResult } from '../training/index.js';
import { assignWeights, decodeWeights } from '../weights/index.js';
import { trainingSetOf, writeAtomic } from './job-files.js';

export const MODEL_WEIGHTS_FILE = 'model.weights';
export const MODEL_CARD_FILE = 'model.json';

/** The slice preset whose size a profile's input size needs. */
export function presetForInputSize(size: number): SlicePresetName {
  if (size === 256) return 'paper';
  if (size === 64) return 'cpu64';
  if (size === 32) return 'cpu32';
  if (size === 16) return 'cpu16';
  throw new Error(`no slice preset makes ${size}² slices (paper 256, cpu64 64, cpu32 32, cpu16 16)`);
}

function inputSizeOf(architecture: ModelArchitecture): number {
  const size = architecture.config.inputSize;
  if (typeof size !== 'number') throw new Error(`${architecture.name}: architecture has no inputSize`);
  return size;
}

async function isDirectory(file: string): Promise<boolean> {
  const info = await stat(file).catch(() => {
    throw new Error(`${file}: no such slice store or data folder`);
  });
  return info.isDirectory();
}

/**
 * A slice store for `data`: the store itself, or a folder of BraTS cases sliced with the preset that matches
 * the model (cached at `cacheFile`).
 */
export async function resolveSliceStore(
  data: string,
  inputSize: number,
  cacheFile: string,
  options: { seed?: number; testFraction?: number; log?: (line: string) => void } = {},
): Promise<string> {
  if (!(await isDirectory(data))) return path.resolve(data);
  const preset = presetForInputSize(inputSize);
  options.log?.(`slicing ${data} with the ${preset} preset -> ${cacheFile}`);
  const summary = await buildSliceStore({
    dataDir: data,
    out: cacheFile,
    preset,
    seed: options.seed ?? 0,
    testFraction: options.testFraction,
  });
  for (const s of summary.skipped)
    options.log?.(`skipped ${s.caseId}${s.file ? ` (${s.file})` : ''}: ${s.reason}`);
  return path.resolve(cacheFile);
}

export interface TrainSegmenterOptions {
  model: SegmenterName;
  profile: SegmenterProfile;
  /** slice store, or folder of BraTS cases */
  data: string;
  out: string;
  steps: number;
  batchSize?: number;
  workers?: number;
  seed?: number;
  checkpointEvery?: number;
  resume?: boolean;
  augmentation?: 'nnunet' | 'none';
  backend?: BackendPreference;
  signal?: AbortSignal;
  onProgress?: (progress: TrainingProgress) => void;
  log?: (line: string) => void;
}

export interface ModelCard {
  format: 'fedsynth-model';
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
}

export async function trainSegmenter(
  options: TrainSegmenterOptions,
): Promise<{ card: ModelCard; dir: string }> {
  const out = path.resolve(options.out);
  await mkdir(out, { recursive: true });
  const architecture = segmenterArchitecture(options.model, options.profile);
  const seed = options.seed ?? 1;
  const store = await resolveSliceStore(
    options.data,
    inputSizeOf(architecture),
    path.join(out, 'slices.fss'),
    {
      seed,
      log: options.log,
    },
  );
  const trainedOn = await trainingSetOf(store);
  const workers = options.workers ?? 2;
  const batchSize = options.batchSize ?? 8;
  const config: SegmenterTaskConfig = { architecture, store, augmentation: options.augmentation ?? 'nnunet' };
  const run = startTraining(
    {
      kind: SEGMENTER_TASK_KIND,
      config,
      seed,
      steps: options.steps,
      batchSize,
      checkpointEvery: options.checkpointEvery ?? 100,
      checkpointDir: path.join(out, 'checkpoints'),
      workers,
      backend: options.backend,
      taskModules: [SEGMENTER_TASK_MODULE],
    },
    { onProgress: options.onProgress, signal: options.signal, resume: options.resume, logger: options.log },
  );
  const result = await run.done;
  const card: ModelCard = {
    format: 'fedsynth-model',
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
  };
  // Weights then card, each atomically: a card on disk always describes weights that are there.
  await writeAtomic(path.join(out, MODEL_WEIGHTS_FILE), result.weightsBlob);
  await writeAtomic(path.join(out, MODEL_CARD_FILE), Buffer.from(JSON.stringify(card, null, 2)));
  return { card, dir: out };
}

export interface EvaluateSegmenterOptions {
  /** folder written by trainSegmenter (model.weights), or a weights file */
  model: string;
  data: string;
  /** default: 'test' for a slice store, 'all' for a data folder (its subjects are held out by construction) */
  split?: Split | 'all';
  backend?: BackendPreference;
  workDir?: string;
  onProgress?: (done: number, total: number, subject: string) => void;
  log?: (line: string) => void;
}

export async function evaluateSegmenterModel(
  options: EvaluateSegmenterOptions,
): Promise<EvaluationResult & { architecture: ModelArchitecture; store: string; backend: string }> {
  const weightsFile = options.model.endsWith('.weights')
    ? options.model
    : path.join(options.model, MODEL_WEIGHTS_FILE);
  const decoded = decodeWeights(await readFile(weightsFile), weightsFile);
  const architecture = decoded.manifest.architecture as ModelArchitecture;
  const isDir = await isDirectory(options.data);
  const workDir = options.workDir ?? path.dirname(weightsFile);
  const store = await resolveSliceStore(
    options.data,
    inputSizeOf(architecture),
    path.join(workDir, 'eval-slices.fss'),
    {
      testFraction: 0,
      log: options.log,
    },
  );
  const backend = await selectBackend({ prefer: options.backend, logger: options.log });
  const segmenter = buildSegmenter(architecture, 0);
  const reader = await SliceStoreReader.open(store);
  try {
    if (reader.meta.size !== inputSizeOf(architecture)) {
      throw new Error(
        `${store}: slices are ${reader.meta.size}² but the ${architecture.name} model expects ${inputSizeOf(architecture)}² (use the matching preset)`,
      );
    }
    assignWeights(segmenter.variables, decoded.tensors);
    const result = await evaluateSegmenter(segmenter, reader, {
      split: options.split ?? (isDir ? 'all' : 'test'),
      onProgress: options.onProgress,
    });
    return { ...result, architecture, store, backend: backend.name };
  } finally {
    segmenter.dispose();
    await reader.close();
  }
}
