// The two things one does with a segmenter outside a federation: train it on a slice store (or a data folder,
// sliced on the way) in worker threads, and measure it on held-out real subjects. The CLI and the coordinator
// both call these.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { SliceStoreReader } from '../../slices/slice-store.js';
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
import { assignWeights, decodeWeights } from '../weights/index.js';
import { isDirectory, modelInputSize, resolveSliceStore, writeAtomic } from './job-files.js';
import { runTrainingJob, type TrainedModelFacts, type TrainingJobOptions } from './training-job.js';

export const MODEL_WEIGHTS_FILE = 'model.weights';
export const MODEL_CARD_FILE = 'model.json';

export interface TrainSegmenterOptions extends TrainingJobOptions {
  model: SegmenterName;
  profile: SegmenterProfile;
  augmentation?: 'nnunet' | 'none';
}

export interface ModelCard extends TrainedModelFacts {
  format: 'fedsynth-model';
}

export async function trainSegmenter(
  options: TrainSegmenterOptions,
): Promise<{ card: ModelCard; dir: string }> {
  const architecture = segmenterArchitecture(options.model, options.profile);
  const { dir, result, facts } = await runTrainingJob(options, architecture, (store) => ({
    kind: SEGMENTER_TASK_KIND,
    config: {
      architecture,
      store,
      augmentation: options.augmentation ?? 'nnunet',
    } satisfies SegmenterTaskConfig,
    taskModules: [SEGMENTER_TASK_MODULE],
  }));
  const card: ModelCard = { format: 'fedsynth-model', ...facts };
  // Weights then card, each atomically: a card on disk always describes weights that are there.
  await writeAtomic(path.join(dir, MODEL_WEIGHTS_FILE), result.weightsBlob);
  await writeAtomic(path.join(dir, MODEL_CARD_FILE), Buffer.from(JSON.stringify(card, null, 2)));
  return { card, dir };
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
    modelInputSize(architecture),
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
    if (reader.meta.size !== modelInputSize(architecture)) {
      throw new Error(
        `${store}: slices are ${reader.meta.size}² but the ${architecture.name} model expects ${modelInputSize(architecture)}² (use the matching preset)`,
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
