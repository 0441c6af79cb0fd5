// The feature network of the sample-quality Fréchet distance: the encoder of one of fedsynth's own trained
// U-Nets. Inception weights (FID) are not available offline, and a segmenter trained on the site's slices
// knows what matters in them. A slice's feature vector is the global average over the pixels of the deepest
// encoder stage (the bottleneck), read from the slice's image channels with the preprocessing the segmenter
// sees (byte / 127.5 − 1). Distances are comparable only between runs that used the same feature network.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { toSegmentationBatch } from '../data/slice-batch.js';
import { conv2d, instanceNorm, leakyRelu, type Conv2dLayer, type NormLayer } from '../layers/index.js';
import type { ModelArchitecture } from '../model.js';
import { buildSegmenter, unetFilters, type UNetConfig } from '../segmentation/index.js';
import { assignWeights, decodeWeights } from '../weights/index.js';
import { frechetDistance, gaussianStats, type FrechetDistance } from './frechet.js';
import type { SliceSet } from './sample-quality.js';

/** The U-Net's LeakyReLU slope and instance-norm epsilon (unet.ts, createNorm's default). */
const NEGATIVE_SLOPE = 0.01;
const NORM_EPSILON = 1e-5;

/**
 * Where the bottleneck is read. 'pre-norm': the output of its last convolution, before the instance norm
 * (default). 'activation': after norm and LeakyReLU — but the instance norm fixes every channel's spatial mean
 * and spread to its learnt β and |γ| for every image, so the average of that carries little about the image.
 */
export type FeaturePoint = 'pre-norm' | 'activation';

export interface FeatureNetwork {
  /** the weights file the encoder came from */
  source: string;
  architecture: ModelArchitecture;
  point: FeaturePoint;
  /** feature vector length (channels of the deepest stage) */
  dim: number;
  /** slice side the network was built for */
  inputSize: number;
  /** feature vectors [count, dim] of NHWC uint8 slices (T1, T2, FLAIR, T1ce, annotation; only images are read) */
  extract(set: SliceSet, batchSize?: number): Promise<Float32Array>;
  dispose(): void;
}

interface EncoderBlock {
  conv: Conv2dLayer;
  norm: NormLayer;
}

function unetEncoder(
  variables: Record<string, tf.Variable>,
  config: UNetConfig,
  source: string,
): EncoderBlock[][] {
  const filters = unetFilters(config);
  const used = new Set<string>();
  const take = (name: string, shape: number[]): tf.Variable => {
    const variable = variables[name];
    if (!variable || variable.shape.join(',') !== shape.join(',')) {
      throw new Error(
        `${source}: U-Net encoder variable "${name}" ${variable ? `has shape [${variable.shape.join(', ')}], expected` : 'missing, expected shape'} [${shape.join(', ')}]`,
      );
    }
    used.add(name);
    return variable;
  };
  const stages = filters.map((out, level) =>
    [0, 1].map((b): EncoderBlock => {
      const inChannels = b === 1 ? out : level === 0 ? 4 : filters[level - 1]!;
      const prefix = `enc${level}/block${b}`;
      return {
        conv: {
          kernel: take(`${prefix}/conv/kernel`, [3, 3, inChannels, out]),
          strides: level > 0 && b === 0 ? 2 : 1,
          padding: 'same',
        },
        norm: {
          gamma: take(`${prefix}/norm/gamma`, [out]),
          beta: take(`${prefix}/norm/beta`, [out]),
          epsilon: NORM_EPSILON,
        },
      };
    }),
  );
  // Every encoder variable must be one this mirror of unet.ts's encoder reads: a change to the U-Net's encoder
  // shows up here as an error instead of as silently different features.
  const unread = Object.keys(variables).filter((name) => name.startsWith('enc') && !used.has(name));
  if (unread.length > 0) {
    throw new Error(
      `${source}: U-Net encoder variables this feature extractor does not know: ${unread.join(', ')}`,
    );
  }
  return stages;
}

/**
 * Loads the encoder of a trained U-Net: a folder written by train-seg (model.weights) or a weights file.
 * Swin segmenters are refused (their deepest stage is a token grid, not built for this yet).
 */
export async function loadFeatureNetwork(
  modelPath: string,
  options: { point?: FeaturePoint } = {},
): Promise<FeatureNetwork> {
  const file = modelPath.endsWith('.weights') ? modelPath : path.join(modelPath, 'model.weights');
  let blob: Buffer;
  try {
    blob = await readFile(file);
  } catch (error) {
    throw new Error(`feature network ${file}: cannot read (${(error as Error).message})`);
  }
  const { manifest, tensors } = decodeWeights(blob, file);
  const architecture = manifest.architecture as ModelArchitecture;
  if (architecture.name !== 'unet') {
    throw new Error(
      `feature network ${file}: a '${architecture.name}' model; the Fréchet distance needs a U-Net segmenter (train-seg --model unet)`,
    );
  }
  const config = architecture.config as unknown as UNetConfig;
  const point = options.point ?? 'pre-norm';
  const model = buildSegmenter(architecture, 0);
  try {
    assignWeights(model.variables, tensors);
  } catch (error) {
    model.dispose();
    throw error;
  }
  let stages: EncoderBlock[][];
  try {
    stages = unetEncoder(model.variables, config, file);
  } catch (error) {
    model.dispose();
    throw error;
  }
  const dim = unetFilters(config).at(-1)!;

  const features = (images: tf.Tensor4D): tf.Tensor2D =>
    tf.tidy(() => {
      let x = images;
      stages.forEach((blocks, level) =>
        blocks.forEach((block, b) => {
          const convolved = conv2d(x, block.conv);
          if (point === 'pre-norm' && level === stages.length - 1 && b === 1) x = convolved;
          else x = leakyRelu(instanceNorm(convolved, block.norm), NEGATIVE_SLOPE);
        }),
      );
      return tf.mean(x, [1, 2]) as tf.Tensor2D;
    });

  return {
    source: file,
    architecture,
    point,
    dim,
    inputSize: config.inputSize,
    async extract(set: SliceSet, batchSize = 32): Promise<Float32Array> {
      const step = 2 ** (config.depth - 1);
      if (set.size % step !== 0) {
        throw new Error(`feature network ${file}: slices of ${set.size}² are not divisible by ${step}`);
      }
      const out = new Float32Array(set.count * dim);
      const sliceBytes = set.size * set.size * 5;
      for (let start = 0; start < set.count; start += batchSize) {
        const n = Math.min(batchSize, set.count - start);
        const batch = toSegmentationBatch(
          set.slices.subarray(start * sliceBytes, (start + n) * sliceBytes),
          n,
          set.size,
        );
        const result = tf.tidy(() => features(tf.tensor4d(batch.images, [n, set.size, set.size, 4])));
        try {
          out.set(await result.data(), start * dim);
        } finally {
          result.dispose();
        }
      }
      return out;
    },
    dispose: () => model.dispose(),
  };
}

export interface FrechetReport extends FrechetDistance {
  /** what the features are, for the report's reader */
  featureSpace: string;
  /** the feature network's weights file */
  featureNetwork: string;
  point: FeaturePoint;
  dim: number;
  realCount: number;
  syntheticCount: number;
}

/** FD between a real and a synthetic slice set in the feature space of `network`. */
export async function frechetDistanceOfSets(
  network: FeatureNetwork,
  real: SliceSet,
  synthetic: SliceSet,
): Promise<FrechetReport> {
  const realFeatures = await network.extract(real);
  const syntheticFeatures = await network.extract(synthetic);
  const fd = frechetDistance(
    gaussianStats(realFeatures, real.count, network.dim),
    gaussianStats(syntheticFeatures, synthetic.count, network.dim),
  );
  return {
    ...fd,
    featureSpace: `global-average-pooled bottleneck (${network.point}) of fedsynth's own U-Net encoder; not FID`,
    featureNetwork: network.source,
    point: network.point,
    dim: network.dim,
    realCount: real.count,
    syntheticCount: synthetic.count,
  };
}
