// Shared by the ProGAN and StyleGAN 1 specs: the wasm backend, latents, weight snapshots and a small local GAN
// training loop (WGAN-GP and non-saturating + R1 written out here, so the architectures are tested on their own).
import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../../util/rng.js';
import { selectBackend } from '../../backend/index.js';
import type { TrainableModel } from '../../model.js';
import {
  nonSaturatingDiscriminatorLoss,
  nonSaturatingGeneratorLoss,
  r1Penalty,
  wganGeneratorLoss,
  wganGpDiscriminatorLoss,
} from '../gan/losses.js';
import { GAN_CHANNELS, type DiscriminatorModel, type GeneratorModel } from '../gan/types.js';

/** wasm with the fedsynth training kernels (importing the shared losses registered the higher-order gradients). */
export async function useWasm(): Promise<void> {
  await selectBackend({ prefer: 'wasm' });
}

/** z ~ N(0, I) [n, dim] from a seed (JS-side, backend-independent). */
export function latents(seed: number, n: number, dim: number): tf.Tensor2D {
  const rng = createRng(seed);
  return tf.tensor2d(
    Float32Array.from({ length: n * dim }, () => rng.normal()),
    [n, dim],
  );
}

/** Smooth 5-channel "slices" in [-1, 1] for the training tests. */
export function realBatch(seed: number, n: number, size: number): tf.Tensor4D {
  const rng = createRng(seed);
  const values = new Float32Array(n * size * size * GAN_CHANNELS);
  for (let i = 0; i < n; i++) {
    const cy = rng.uniform(0.3, 0.7) * size;
    const cx = rng.uniform(0.3, 0.7) * size;
    const r = rng.uniform(0.15, 0.3) * size;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r;
        for (let c = 0; c < GAN_CHANNELS; c++) {
          values[((i * size + y) * size + x) * GAN_CHANNELS + c] = inside ? 0.2 * c - 0.3 : -1;
        }
      }
    }
  }
  return tf.tensor4d(values, [n, size, size, GAN_CHANNELS]);
}

export function snapshot(model: TrainableModel): Map<string, Float32Array> {
  return new Map(
    Object.entries(model.variables).map(([name, v]) => [name, (v.dataSync() as Float32Array).slice()]),
  );
}

/** Names whose values differ between two snapshots. */
export function changed(a: Map<string, Float32Array>, b: Map<string, Float32Array>): string[] {
  return [...a.keys()].filter((name) => {
    const x = a.get(name)!;
    const y = b.get(name)!;
    return x.some((value, i) => value !== y[i]);
  });
}

export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

export type LocalLoss = 'wgan-gp' | 'nonsaturating-r1';

export interface LocalStepOptions {
  loss: LocalLoss;
  /** Seed for this step's latents and interpolation weights. */
  seed: number;
  gpLambda?: number;
  driftEpsilon?: number;
  r1Gamma?: number;
  /** Extra generate() options (style mixing, noise) for both phases. */
  generateOptions?: (phase: 'D' | 'G') => Parameters<GeneratorModel['generate']>[1];
}

function trainable(model: TrainableModel): tf.Variable[] {
  return Object.values(model.variables).filter((v) => v.trainable);
}

/**
 * Applies one Adam update. tf.train.adam keeps its moments by the position of a gradient in the map, so every
 * call passes all variables in one order (zeros for those without a gradient, e.g. an unused growth level).
 */
function applyGrads(
  optimizer: tf.Optimizer,
  variables: tf.Variable[],
  value: tf.Scalar,
  grads: tf.NamedTensorMap,
): number {
  const loss = value.dataSync()[0]!;
  tf.tidy(() => {
    const all: tf.NamedTensorMap = {};
    for (const variable of variables) all[variable.name] = grads[variable.name] ?? tf.zerosLike(variable);
    optimizer.applyGradients(all);
  });
  value.dispose();
  tf.dispose(grads);
  return loss;
}

/**
 * One D step then one G step with the shared losses (gan/losses.ts) and plain Adam: WGAN-GP with the drift term,
 * or non-saturating + R1 (every step).
 */
export function localGanStep(
  generator: GeneratorModel,
  discriminator: DiscriminatorModel,
  optimizers: { g: tf.Optimizer; d: tf.Optimizer },
  reals: tf.Tensor4D,
  options: LocalStepOptions,
): { d: number; g: number } {
  const n = reals.shape[0];
  const z = latents(options.seed, n, generator.latentDim);
  const alpha = tf.randomUniform([n], 0, 1, 'float32', options.seed) as tf.Tensor1D;
  const preparedReals = discriminator.prepareReals ? discriminator.prepareReals(reals) : reals;
  const score = (images: tf.Tensor4D): tf.Tensor => discriminator.score(images, true);
  const fakes = generator.generate(z, { training: true, ...options.generateOptions?.('D') });
  const dGrads = tf.variableGrads(() => {
    if (options.loss === 'wgan-gp') {
      return wganGpDiscriminatorLoss(score, preparedReals, fakes, {
        alpha,
        lambda: options.gpLambda,
        driftEpsilon: options.driftEpsilon,
      }).loss;
    }
    const loss = nonSaturatingDiscriminatorLoss(score(preparedReals), score(fakes));
    return tf.add(loss, r1Penalty(score, preparedReals, { gamma: options.r1Gamma ?? 10 })) as tf.Scalar;
  }, trainable(discriminator));
  const d = applyGrads(optimizers.d, trainable(discriminator), dGrads.value, dGrads.grads);

  const gGrads = tf.variableGrads(() => {
    const fakeScores = score(generator.generate(z, { training: true, ...options.generateOptions?.('G') }));
    return options.loss === 'wgan-gp'
      ? wganGeneratorLoss(fakeScores)
      : nonSaturatingGeneratorLoss(fakeScores);
  }, trainable(generator));
  const g = applyGrads(optimizers.g, trainable(generator), gGrads.value, gGrads.grads);
  if (preparedReals !== reals) preparedReals.dispose();
  tf.dispose([fakes, z, alpha]);
  return { d, g };
}
