// What a site needs for study jobs beyond the CLI's train/sample: the architecture a model spec trains (to read
// the slice size before training), the training set of a round that mixes real and synthetic slices, and a
// generator to sample from built out of a round's weights (the GAN training blob holds G and D; the EMA blob
// holds G alone).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ANNOTATION_OF_CANONICAL, SLICE_CHANNELS } from '../../slices/presets.js';
import { SliceStoreReader, SliceStoreWriter } from '../../slices/slice-store.js';
import { createRng } from '../../util/rng.js';
import { ddpmArchitecture, type DdpmProfile } from '../generators/ddpm/index.js';
import type { ModelArchitecture } from '../model.js';
import {
  segmenterArchitecture,
  type SegmenterName,
  type SegmenterProfile,
} from '../segmentation/segmenters.js';
import { decodeWeights, encodeWeights, WeightsMismatchError } from '../weights/index.js';
import {
  GENERATOR_WEIGHTS_FILE,
  ganArchitectureRecord,
  type GeneratorName,
  type GeneratorProfile,
} from './generator-jobs.js';
import { writeAtomic } from './job-files.js';

export type StudyModelSpec =
  | { task: 'generator'; model: GeneratorName; profile: GeneratorProfile }
  | { task: 'segmenter'; model: SegmenterName; profile: SegmenterProfile };

/** The network a model spec describes (GANs: the generator's architecture record, whose config has the resolution). */
export async function studyModelArchitecture(spec: StudyModelSpec): Promise<ModelArchitecture> {
  if (spec.task === 'segmenter') return segmenterArchitecture(spec.model, spec.profile);
  if (spec.model === 'ddpm') return ddpmArchitecture(spec.profile as DdpmProfile);
  return ganArchitectureRecord(spec.model, spec.profile);
}

export interface TrainingMixOptions {
  /** the site's real slices: its labelled training subjects are used */
  real: string;
  /** synthetic slices (every slice is used as labelled training data) */
  pool?: string;
  /** share of synthetic slices in [0, 1] */
  syntheticShare: number;
  /** slices in the mix (default: the real training slice count) */
  totalSlices?: number;
  /** all real training slices plus the whole pool (ignores share and total) */
  both?: boolean;
  seed: number;
  out: string;
}

export interface TrainingMixSummary {
  out: string;
  real: number;
  synthetic: number;
  total: number;
}

/** Slices copied per read/write when building a mix: memory stays bounded whatever the store sizes. */
export const MIX_COPY_CHUNK = 256;

/** The first n of a seeded permutation of [0, count), in ascending order (stable reads, same set for a seed). */
function seededSubset(count: number, n: number, seed: number, label: string): number[] {
  const rng = createRng(seed).fork(label);
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order.slice(0, n).sort((a, b) => a - b);
}

/**
 * Writes the training set of a mixing round: round(share·total) slices drawn from the pool and the rest from the
 * real training slices, each a deterministic subset for the seed; or, with `both`, everything. All slices land in
 * the 'train' split as subjects 'real' and 'synthetic' (split in chunks of MIX_COPY_CHUNK slices: 'real#2', ...).
 */
export async function buildTrainingMix(options: TrainingMixOptions): Promise<TrainingMixSummary> {
  const { syntheticShare: share } = options;
  if (!(share >= 0 && share <= 1)) throw new Error(`syntheticShare must be in [0, 1] (got ${share})`);
  const real = await SliceStoreReader.open(options.real);
  const pool = options.pool ? await SliceStoreReader.open(options.pool) : undefined;
  try {
    const realIndices = real.indicesOf('train', { labelledOnly: true });
    const poolCount = pool?.count ?? 0;
    if (pool && pool.meta.size !== real.meta.size) {
      throw new Error(
        `${options.pool}: synthetic slices are ${pool.meta.size}², the real ones ${real.meta.size}²`,
      );
    }
    if (pool && pool.meta.sliceBytes !== real.meta.sliceBytes) {
      throw new Error(`${options.pool}: synthetic slices have other channels than the real ones`);
    }
    let realPick: number[];
    let poolPick: number[];
    if (options.both) {
      realPick = realIndices;
      poolPick = Array.from({ length: poolCount }, (_, i) => i);
    } else {
      const total = options.totalSlices ?? realIndices.length;
      const synthetic = Math.round(share * total);
      const fromReal = total - synthetic;
      if (synthetic > poolCount) {
        throw new Error(
          `the mix needs ${synthetic} synthetic slices but the pool has ${poolCount}` +
            (pool ? '' : ' (no synthetic-pool input)'),
        );
      }
      if (fromReal > realIndices.length) {
        throw new Error(
          `the mix needs ${fromReal} real training slices but the site has ${realIndices.length}`,
        );
      }
      realPick = seededSubset(realIndices.length, fromReal, options.seed, 'real').map((i) => realIndices[i]!);
      poolPick = seededSubset(poolCount, synthetic, options.seed, 'synthetic');
    }
    if (realPick.length + poolPick.length === 0) throw new Error('the training mix would be empty');
    await mkdir(path.dirname(path.resolve(options.out)), { recursive: true });
    const { size } = real.meta;
    const writer = await SliceStoreWriter.create(options.out, {
      preset: real.meta.preset,
      scale: real.meta.scale,
      size,
      channels: [...SLICE_CHANNELS],
      dtype: 'uint8',
      layout: 'NHWC',
      annotation: {
        NCR: ANNOTATION_OF_CANONICAL[1]!,
        ED: ANNOTATION_OF_CANONICAL[2]!,
        ET: ANNOTATION_OF_CANONICAL[3]!,
      },
      split: { seed: options.seed, testFraction: 0 },
      createdAt: new Date().toISOString(),
    });
    try {
      for (const [id, reader, picks] of [
        ['real', real, realPick],
        ['synthetic', pool, poolPick],
      ] as const) {
        if (!reader || picks.length === 0) continue;
        // The writer takes a subject's slices at once, so a source is copied as consecutive subjects of at most
        // MIX_COPY_CHUNK slices each (id, id#2, ...); training reads them all as one labelled training set.
        for (let start = 0; start < picks.length; start += MIX_COPY_CHUNK) {
          const chunk = picks.slice(start, start + MIX_COPY_CHUNK);
          await writer.addSubject(
            {
              id: start === 0 ? id : `${id}#${start / MIX_COPY_CHUNK + 1}`,
              split: 'train',
              labelled: true,
              z: chunk.map((_, i) => start + i),
              sourceDims: [size, size, picks.length],
              reference: {},
            },
            await reader.readIndices(chunk),
          );
        }
      }
      await writer.close();
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return {
      out: path.resolve(options.out),
      real: realPick.length,
      synthetic: poolPick.length,
      total: realPick.length + poolPick.length,
    };
  } finally {
    await real.close();
    await pool?.close();
  }
}

/**
 * The generator blob to sample from, out of a round's outputs: the EMA blob when there is one (GANs: G_ema; the
 * diffusion model: its EMA), else the weights (a GAN training blob is cut down to its G/ tensors).
 */
export function generatorBlobFromWeights(weights: Uint8Array, ema?: Uint8Array): Buffer {
  if (ema) {
    decodeWeights(ema, 'ema weights'); // verified here so a corrupt input fails before any model is built
    return Buffer.from(ema.buffer, ema.byteOffset, ema.byteLength);
  }
  const decoded = decodeWeights(weights, 'weights');
  const { architecture } = decoded.manifest;
  if (architecture.name !== 'gan') return Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength);
  const config = architecture.config as { architecture?: unknown; config?: unknown };
  if (
    typeof config.architecture !== 'string' ||
    typeof config.config !== 'object' ||
    config.config === null
  ) {
    throw new WeightsMismatchError('weights: a GAN training blob without its generator architecture');
  }
  const generator = decoded.tensors
    .filter((t) => t.name.startsWith('G/'))
    .map((t) => ({ ...t, name: t.name.slice(2) }));
  if (generator.length === 0)
    throw new WeightsMismatchError('weights: the GAN training blob has no G/ tensors');
  return encodeWeights(generator, {
    architecture: { name: config.architecture, config: config.config as Record<string, unknown> },
    provenance: { derivedFrom: 'gan training weights (G/)' },
  });
}

/** Writes `dir`/generator.weights (what sampleFromGenerator loads) from a round's weights and EMA. */
export async function generatorFolderFromWeights(
  dir: string,
  weights: Uint8Array,
  ema?: Uint8Array,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeAtomic(path.join(dir, GENERATOR_WEIGHTS_FILE), generatorBlobFromWeights(weights, ema));
  return dir;
}
