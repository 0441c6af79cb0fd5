// Shared by the diffusion specs: the wasm backend, tiny models with non-trivial weights, stand-in predictors.
import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../../util/rng.js';
import { selectBackend } from '../../backend/index.js';
import { buildDdpm, ddpmConfig, normals, type DdpmConfig, type DdpmModel } from './ddpm.js';

/** wasm with the fedsynth training kernels (training on the pure-JS cpu backend is far too slow). */
export async function useWasm(): Promise<void> {
  await selectBackend({ prefer: 'wasm', logger: () => {} });
}

/**
 * Adds N(0, scale²) to every variable (seeded): a new model predicts exactly 0 (zero-initialised output
 * layers), which would make sampling and gradient tests trivial.
 */
export function perturb(variables: Record<string, tf.Variable>, seed: number, scale = 0.05): void {
  const rng = createRng(`perturb-${seed}`);
  for (const name of Object.keys(variables).sort()) {
    const variable = variables[name]!;
    const noise = normals(rng, variable.size).map((value) => value * scale);
    tf.tidy(() => variable.assign(tf.add(variable, tf.tensor(noise, variable.shape, 'float32'))));
  }
}

/** A tiny DDPM (16², T = 50) whose weights were perturbed so its output is not zero. */
export function tinyModel(seed = 1, overrides: Partial<DdpmConfig> = {}): DdpmModel {
  const model = buildDdpm(ddpmConfig('tiny', overrides), seed);
  perturb(model.variables, seed);
  return model;
}

/** All variables' values by name. */
export function snapshot(variables: Record<string, tf.Variable>): Map<string, Float32Array> {
  return new Map(
    Object.entries(variables).map(([name, v]) => [name, (v.dataSync() as Float32Array).slice()]),
  );
}

/** A random [n, size, size, 5] batch in [-1, 1]. */
export function randomImages(seed: number | string, n: number, size: number, channels = 5): tf.Tensor4D {
  const rng = createRng(seed);
  return tf.tensor4d(
    Float32Array.from({ length: n * size * size * channels }, () => rng.uniform(-1, 1)),
    [n, size, size, channels],
  );
}
