// The 'segmenter' training task: U-Net or Swin on a slice store's labelled training subjects, with the paper's
// augmentation and optimizer. Importing this module registers it; SEGMENTER_TASK_MODULE goes in spec.taskModules.
import * as tf from '@tensorflow/tfjs';

import { SliceStoreReader } from '../../slices/slice-store.js';
import type { Rng } from '../../util/rng.js';
import { augmentBatch, NNUNET_AUGMENTATION, type AugmentOptions } from '../augment/index.js';
import { toSegmentationBatch } from '../data/slice-batch.js';
import { SEGMENTATION_INPUT_CHANNELS, type ModelArchitecture, type Segmenter } from '../model.js';
import { paperSwinOptimizer, paperUNetOptimizer } from '../training/optimizers.js';
import {
  registerTrainingTask,
  type LossAndGrads,
  type StepBatch,
  type TaskContext,
  type TaskInit,
  type TrainingTask,
} from '../training/registry.js';
import { scheduleTotalSteps, type TrainingSpec } from '../training/spec.js';
import { segmentationLoss } from './losses.js';
import { buildSegmenter } from './segmenters.js';

export const SEGMENTER_TASK_KIND = 'segmenter';
export const SEGMENTER_TASK_MODULE = import.meta.url;

export interface SegmenterTaskConfig {
  architecture: ModelArchitecture;
  /** absolute path of the slice store; training uses its labelled 'train' subjects */
  store: string;
  /** nnU-Net's 2-D augmentation (default) or none */
  augmentation?: 'nnunet' | 'none';
  /** Swin's warm-up steps (default: a tenth of the run, at most 1500) */
  warmupSteps?: number;
}

/** Stores up to this size are read into memory once; larger ones are read batch by batch from disk. */
const IN_MEMORY_LIMIT_BYTES = 1 << 30;

export class SegmenterTask implements TrainingTask<SegmenterTaskConfig> {
  private config!: SegmenterTaskConfig;
  private model!: Segmenter;
  private store?: SliceStoreReader;
  private cached?: Uint8Array;
  private trainIndices: number[] = [];
  private augmentation?: AugmentOptions;

  init(spec: TrainingSpec<SegmenterTaskConfig>, ctx: TaskContext): TaskInit {
    this.config = spec.config;
    this.augmentation = spec.config.augmentation === 'none' ? undefined : NNUNET_AUGMENTATION;
    this.model = buildSegmenter(spec.config.architecture, spec.seed);
    ctx.log(`segmenter ${spec.config.architecture.name} built`);
    const optimizer =
      spec.config.architecture.name === 'swin'
        ? paperSwinOptimizer(
            spec.config.warmupSteps ?? Math.min(1500, Math.ceil(scheduleTotalSteps(spec) / 10)),
          )
        : paperUNetOptimizer();
    return { model: this.model, optimizer };
  }

  async loadShard(): Promise<void> {
    const store = await SliceStoreReader.open(this.config.store);
    this.store = store;
    const inputSize = this.config.architecture.config.inputSize;
    if (typeof inputSize === 'number' && inputSize !== store.meta.size) {
      throw new Error(
        `${store.file}: slices are ${store.meta.size}² but the ${this.config.architecture.name} profile expects ${inputSize}² (use the matching preset)`,
      );
    }
    this.trainIndices = store.indicesOf('train', { labelledOnly: true });
    if (this.trainIndices.length === 0) throw new Error(`${store.file}: no labelled training slices`);
    if (store.count * store.meta.sliceBytes <= IN_MEMORY_LIMIT_BYTES) {
      this.cached = await store.readRange(0, store.count);
    }
  }

  private async slices(indices: number[]): Promise<Uint8Array> {
    const bytes = this.store!.meta.sliceBytes;
    if (!this.cached) return this.store!.readIndices(indices);
    const out = new Uint8Array(indices.length * bytes);
    indices.forEach((index, k) =>
      out.set(this.cached!.subarray(index * bytes, (index + 1) * bytes), k * bytes),
    );
    return out;
  }

  async computeLossAndGrads(_step: number, rng: Rng, batch: StepBatch): Promise<LossAndGrads> {
    // One global batch from the shared stream, this worker's part of it: results do not depend on the worker count.
    const global = Array.from(
      { length: batch.globalSize },
      () => this.trainIndices[batch.sharedRng.int(this.trainIndices.length)]!,
    );
    const mine = global.slice(batch.offset, batch.offset + batch.count);
    const size = this.store!.meta.size;
    const data = toSegmentationBatch(await this.slices(mine), mine.length, size);
    const images = tf.tensor4d(data.images, [mine.length, size, size, SEGMENTATION_INPUT_CHANNELS]);
    const labels = tf.tensor3d(data.labels, [mine.length, size, size], 'int32');
    const augmented = this.augmentation
      ? augmentBatch(images, labels, rng, this.augmentation)
      : { images, labels };
    try {
      const { value, grads } = tf.variableGrads(
        () => segmentationLoss(this.model.forward(augmented.images, true), augmented.labels),
        Object.values(this.model.variables),
      );
      const loss = (await value.data())[0]!;
      value.dispose();
      // variableGrads keys by the tf.Variable's own name; the runtime wants the model's stable names.
      const byName: Record<string, tf.Tensor> = {};
      for (const [name, variable] of Object.entries(this.model.variables))
        byName[name] = grads[variable.name]!;
      return { loss, grads: byName, images: mine.length };
    } finally {
      tf.dispose([images, labels]);
      if (augmented.images !== images) tf.dispose([augmented.images, augmented.labels]);
    }
  }

  dispose(): void {
    void this.store?.close();
  }
}

registerTrainingTask(SEGMENTER_TASK_KIND, () => new SegmenterTask());
