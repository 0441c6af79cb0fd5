// Sampling a trained generator into slice bytes: the same NHWC 5-channel uint8 layout as the slice store, so
// samples go wherever real slices go (pool, audit, segmenter training). Deterministic for (weights, seed, options).
import * as tf from '@tensorflow/tfjs';

import { ANNOTATION_OF_CANONICAL, decodeAnnotation } from '../../../slices/presets.js';
import { createRng, type Rng } from '../../../util/rng.js';

import { ANNOTATION_CHANNEL, type GeneratorModel } from './types.js';

/** n latents [n, latentDim] ~ N(0, I), latent i drawn from rng.fork(i) (independent of how they are batched). */
export function latentsFor(rng: Rng, first: number, count: number, latentDim: number): Float32Array {
  const values = new Float32Array(count * latentDim);
  for (let i = 0; i < count; i++) {
    const stream = rng.fork(first + i);
    for (let j = 0; j < latentDim; j++) values[i * latentDim + j] = stream.normal();
  }
  return values;
}

/**
 * w̄ of a mapping generator: the mean of mapLatents(z) over `samples` latents (StyleGAN tracks it during training
 * as w_avg; computing it from the final weights gives the same quantity without state). undefined for generators
 * without a mapping network.
 */
export function averageLatent(
  generator: GeneratorModel,
  options: { samples?: number; seed?: number; batchSize?: number } = {},
): tf.Tensor1D | undefined {
  if (!generator.mapLatents) return undefined;
  const samples = options.samples ?? 4096;
  const batchSize = options.batchSize ?? 256;
  const rng = createRng(options.seed ?? 0).fork('average-latent');
  let sum: tf.Tensor | undefined;
  for (let first = 0; first < samples; first += batchSize) {
    const count = Math.min(batchSize, samples - first);
    const next = tf.tidy(() => {
      const z = tf.tensor2d(latentsFor(rng, first, count, generator.latentDim), [count, generator.latentDim]);
      // [count, layers, wDim]: every layer's w is the same before truncation/mixing.
      const ws = generator.mapLatents!(z, { truncationPsi: 1 });
      const total = tf.sum(tf.slice(ws, [0, 0, 0], [count, 1, ws.shape[2]]), [0, 1]);
      return sum ? tf.add(sum, total) : total;
    });
    sum?.dispose();
    sum = next;
  }
  const mean = tf.div(sum!, samples) as tf.Tensor1D;
  sum!.dispose();
  return mean;
}

export interface SampleOptions {
  n: number;
  seed: number;
  /** Truncation ψ (default 1: none). */
  truncationPsi?: number;
  /** Generator batch (default 16). */
  batchSize?: number;
  /** w̄ for truncation; computed with averageLatent(generator, { seed }) when needed and not given. */
  averageLatent?: tf.Tensor1D;
}

/**
 * n samples as NHWC uint8 bytes [n, R, R, 5]: clipped to [-1, 1], mapped to [0, 255] (round((x + 1) · 127.5)),
 * and the annotation channel snapped to the nearest label level (0, 51, 102, 204; decodeAnnotation's thresholds),
 * so every sample decodes to valid labels. Sample i's latent depends on (seed, i) only; noise inputs on (seed,
 * batch index), so the bytes are deterministic for (weights, seed, n, batchSize, truncationPsi).
 */
export function sampleGenerator(generator: GeneratorModel, options: SampleOptions): Uint8Array {
  const { n, seed } = options;
  if (!(Number.isSafeInteger(n) && n >= 0))
    throw new Error(`sampleGenerator: n must be an integer >= 0 (got ${n})`);
  const batchSize = options.batchSize ?? 16;
  const psi = options.truncationPsi ?? 1;
  const { resolution: size, channels, latentDim } = generator;
  const sliceBytes = size * size * channels;
  const out = new Uint8Array(n * sliceBytes);
  const rng = createRng(seed).fork('sample');
  const ownAverage =
    psi !== 1 && options.averageLatent === undefined ? averageLatent(generator, { seed }) : undefined;
  const average = options.averageLatent ?? ownAverage;
  try {
    for (let first = 0, batch = 0; first < n; first += batchSize, batch++) {
      const count = Math.min(batchSize, n - first);
      const values = tf.tidy(() => {
        const z = tf.tensor2d(latentsFor(rng.fork('z'), first, count, latentDim), [count, latentDim]);
        const images = generator.generate(z, {
          truncationPsi: psi,
          ...(average && { averageLatent: average }),
          noiseSeed: rng
            .fork('noise')
            .fork(batch)
            .int(2 ** 31),
          training: false,
        });
        if (images.shape.join(',') !== [count, size, size, channels].join(',')) {
          throw new Error(
            `generator returned [${images.shape}], expected [${[count, size, size, channels]}]`,
          );
        }
        return tf.round(tf.mul(tf.add(tf.clipByValue(images, -1, 1), 1), 127.5));
      });
      const data = values.dataSync();
      values.dispose();
      const target = out.subarray(first * sliceBytes, (first + count) * sliceBytes);
      for (let i = 0; i < data.length; i++) {
        const value = data[i]!;
        target[i] =
          i % channels === ANNOTATION_CHANNEL ? ANNOTATION_OF_CANONICAL[decodeAnnotation(value)]! : value;
      }
    }
  } finally {
    ownAverage?.dispose();
  }
  return out;
}
