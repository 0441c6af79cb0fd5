// The 'ddpm' training task: the diffusion model on a slice store's training slices (all 5 channels scaled to
// [-1, 1]), with optional left-right mirroring. Importing this module registers it; DDPM_TASK_MODULE goes in
// spec.taskModules.
//
// Randomness: image k of the global batch draws everything (which slice, mirror, t, ε) from
// batch.sharedRng.fork(k), so a step's global batch is the same whatever the worker count, and a resumed run
// draws exactly what an uninterrupted one would.
import * as tf from '@tensorflow/tfjs';

import { SliceStoreReader } from '../../../slices/slice-store.js';
import type { Rng } from '../../../util/rng.js';
import type { ModelArchitecture } from '../../model.js';
import type { AdamWSpec } from '../../training/optimizers.js';
import {
  registerTrainingTask,
  type EmaSpec,
  type LossAndGrads,
  type StepBatch,
  type TaskContext,
  type TaskInit,
  type TrainingTask,
} from '../../training/registry.js';
import type { TrainingSpec } from '../../training/spec.js';
import {
  buildDdpmFromArchitecture,
  ddpmLossAndGrads,
  normals,
  type DdpmModel,
  type DdpmProfile,
} from './ddpm.js';

export const DDPM_TASK_KIND = 'ddpm';
export const DDPM_TASK_MODULE = import.meta.url;

export interface DdpmTaskConfig {
  /** name 'ddpm' (see ddpmArchitecture) */
  architecture: ModelArchitecture;
  /** absolute path of the slice store; training uses its 'train' subjects */
  store: string;
  /** Flip each image left-right with probability 1/2 (default true: the paper's generators use mirroring). */
  mirror?: boolean;
  /**
   * Only subjects with an annotation (default true): an unlabelled subject's annotation channel is all 0, and
   * a generator of (image, label) pairs must not learn tumours without labels. false uses every train slice.
   */
  labelledOnly?: boolean;
  /** Adam learning rate (default 1e-4, improved-diffusion's; Ho et al. used 2e-4 on CIFAR-10). */
  lr?: number;
  /** Linear learning-rate warm-up steps (default 0; Ho et al. used 5000). */
  warmupSteps?: number;
  /** Global gradient-norm clip (default 1, as Ho et al.); 0 disables it. */
  clipNorm?: number;
  /**
   * β of an exponential moving average of all weights, kept by the training runtime (TrainingResult
   * .emaWeightsBlob, same architecture and names as the weights; sample from it). Default: none. Ho et al.
   * and improved-diffusion use 0.9999 (half-life ≈ 6900 steps): right for paper-length runs; short CPU runs
   * want a half-life in images with a ramp-up (`{ halfLifeImages, rampup }`, StyleGAN 2's rule), or none — a
   * constant leaves a short run's average mostly the random initialisation.
   */
  ema?: EmaSpec['beta'];
}

// ≈ 0.999 per step of 8 at steady state (a 5.5k-image half-life), ramped up over the first images
const RAMPED_EMA: Pick<DdpmTaskConfig, 'ema'> = { ema: { halfLifeImages: 5_500, rampup: 0.05 } };
// CPU profiles get minutes, not days: a 5x higher rate than improved-diffusion's 1e-4 (stable here with the gradient
// clip at norm 1), warmed up over 100 steps.
const CPU_RUN: Pick<DdpmTaskConfig, 'lr' | 'warmupSteps' | 'ema'> = {
  ...RAMPED_EMA,
  lr: 5e-4,
  warmupSteps: 100,
};

/** The recipe train-gen uses per profile (a task's config is complete without it: these are not defaults). */
export const DDPM_PROFILE_TRAINING: Record<
  DdpmProfile,
  Pick<DdpmTaskConfig, 'lr' | 'warmupSteps' | 'ema'>
> = { paper: RAMPED_EMA, tiny: RAMPED_EMA, cpu: CPU_RUN, cpu32: CPU_RUN };

/**
 * The task's optimizer: Adam (AdamW with weight decay 0: improved-diffusion's AdamW default), β = (0.9,
 * 0.999), ε = 1e-8, constant lr (1e-4 unless configured) after an optional warm-up, gradients clipped to norm
 * 1.
 */
export function ddpmOptimizer(
  config: Pick<DdpmTaskConfig, 'lr' | 'warmupSteps' | 'clipNorm'> = {},
): AdamWSpec {
  const clipNorm = config.clipNorm ?? 1;
  return {
    type: 'adamw',
    lr: config.lr ?? 1e-4,
    beta1: 0.9,
    beta2: 0.999,
    epsilon: 1e-8,
    weightDecay: 0,
    schedule: { type: 'constant', warmupSteps: config.warmupSteps ?? 0, warmupRatio: 0 },
    ...(clipNorm > 0 ? { clipNorm } : {}),
  };
}

/** Stores up to this size are read into memory once; larger ones are read batch by batch from disk. */
const IN_MEMORY_LIMIT_BYTES = 1 << 30;

/** One image of the global batch: which slice, mirrored or not, its timestep and noise. */
export interface DdpmDraw {
  slice: number;
  mirror: boolean;
  t: number;
  noise: Float32Array;
}

export function drawTrainingImage(
  rng: Rng,
  trainIndices: readonly number[],
  timesteps: number,
  values: number,
  mirror: boolean,
): DdpmDraw {
  const slice = trainIndices[rng.int(trainIndices.length)]!;
  const flip = mirror && rng.chance(0.5);
  const t = rng.int(timesteps);
  return { slice, mirror: flip, t, noise: normals(rng, values) };
}

/** NHWC slice bytes of `count` images → [-1, 1] floats, image k mirrored (x → size − 1 − x) when flags[k]. */
export function slicesToImages(
  bytes: Uint8Array,
  count: number,
  size: number,
  channels: number,
  flags: readonly boolean[],
): Float32Array {
  const out = new Float32Array(count * size * size * channels);
  for (let k = 0; k < count; k++) {
    for (let y = 0; y < size; y++) {
      const row = (k * size + y) * size;
      for (let x = 0; x < size; x++) {
        const src = (row + (flags[k] ? size - 1 - x : x)) * channels;
        const dst = (row + x) * channels;
        for (let c = 0; c < channels; c++) out[dst + c] = bytes[src + c]! / 127.5 - 1;
      }
    }
  }
  return out;
}

export class DdpmTask implements TrainingTask<DdpmTaskConfig> {
  private config!: DdpmTaskConfig;
  private model!: DdpmModel;
  private store?: SliceStoreReader;
  private cached?: Uint8Array;
  private trainIndices: number[] = [];

  init(spec: TrainingSpec<DdpmTaskConfig>, ctx: TaskContext): TaskInit {
    this.config = spec.config;
    this.model = buildDdpmFromArchitecture(spec.config.architecture, spec.seed);
    const c = this.model.config;
    ctx.log(
      `ddpm built: ${c.imageSize}², ${c.baseChannels} ch × [${c.channelMults.join(', ')}], ` +
        `${c.numResBlocks} res blocks, attention at ${c.attentionResolutions.join(', ') || 'none'}, ` +
        `T = ${c.timesteps} ${c.schedule}`,
    );
    const ema = spec.config.ema;
    if (typeof ema === 'number' ? !(ema > 0 && ema < 1) : ema !== undefined && !(ema.halfLifeImages > 0))
      throw new Error(
        `ddpm task: ema must be in (0, 1) or have a positive half-life (got ${JSON.stringify(ema)})`,
      );
    return {
      model: this.model,
      optimizer: ddpmOptimizer(spec.config),
      ...(ema !== undefined && { ema: { variables: Object.keys(this.model.variables), beta: ema } }),
    };
  }

  async loadShard(): Promise<void> {
    const store = await SliceStoreReader.open(this.config.store);
    this.store = store;
    const { imageSize, imageChannels } = this.model.config;
    if (store.meta.size !== imageSize) {
      throw new Error(
        `${store.file}: slices are ${store.meta.size}² but the ddpm architecture expects ${imageSize}² ` +
          '(use the matching preset)',
      );
    }
    if (store.meta.channels.length !== imageChannels) {
      throw new Error(
        `${store.file}: ${store.meta.channels.length} channels, the ddpm expects ${imageChannels}`,
      );
    }
    const labelledOnly = this.config.labelledOnly ?? true;
    this.trainIndices = store.indicesOf('train', { labelledOnly });
    if (this.trainIndices.length === 0) {
      throw new Error(`${store.file}: no ${labelledOnly ? 'labelled ' : ''}training slices`);
    }
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

  async computeLossAndGrads(_step: number, _rng: Rng, batch: StepBatch): Promise<LossAndGrads> {
    const { imageSize: size, imageChannels: channels, timesteps } = this.model.config;
    const values = size * size * channels;
    const mirror = this.config.mirror ?? true;
    const draws = Array.from({ length: batch.count }, (_, k) =>
      drawTrainingImage(batch.sharedRng.fork(batch.offset + k), this.trainIndices, timesteps, values, mirror),
    );
    const bytes = await this.slices(draws.map((draw) => draw.slice));
    const images = slicesToImages(
      bytes,
      draws.length,
      size,
      channels,
      draws.map((draw) => draw.mirror),
    );
    const noiseValues = new Float32Array(draws.length * values);
    draws.forEach((draw, k) => noiseValues.set(draw.noise, k * values));
    const shape: [number, number, number, number] = [draws.length, size, size, channels];
    const x0 = tf.tensor4d(images, shape);
    const noise = tf.tensor4d(noiseValues, shape);
    const t = draws.map((draw) => draw.t);
    try {
      const { loss, grads } = ddpmLossAndGrads(this.model, x0, t, noise);
      const value = (await loss.data())[0]!;
      loss.dispose();
      return { loss: value, grads, images: draws.length };
    } finally {
      tf.dispose([x0, noise]);
    }
  }

  dispose(): void {
    void this.store?.close();
  }
}

registerTrainingTask(DDPM_TASK_KIND, () => new DdpmTask());
