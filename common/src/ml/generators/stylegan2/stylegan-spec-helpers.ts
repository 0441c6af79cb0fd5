// Shared by the StyleGAN 2/3 specs: wasm backend, seeded tensors, snapshots, a direct (loop) upfirdn reference,
// and a small local GAN step (non-saturating loss + R1, written out here so the architectures are tested on
// their own, independent of the shared 'gan' task).
import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../../util/rng.js';
import { selectBackend } from '../../backend/index.js';
import type { TrainableModel } from '../../model.js';
import {
  nonSaturatingDiscriminatorLoss,
  nonSaturatingGeneratorLoss,
  r1Penalty,
  registerHigherOrderGradients,
} from '../gan/losses.js';
import type { DiscriminatorModel, GeneratorModel } from '../gan/types.js';

/**
 * wasm with the fedsynth training kernels, plus gan/losses' zero gradients for the comparison ops (R1
 * differentiates LeakyReLU's gradient, which uses Greater; tfjs-core registers no gradient for it).
 */
export async function useWasm(): Promise<void> {
  await selectBackend({ prefer: 'wasm', logger: () => {} });
  registerHigherOrderGradients();
}

export function randomArray(seed: number | string, size: number, std = 1): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: size }, () => rng.normal(0, std));
}

export function randomTensor(seed: number | string, shape: number[], std = 1): tf.Tensor {
  return tf.tensor(
    randomArray(
      seed,
      shape.reduce((a, b) => a * b, 1),
      std,
    ),
    shape,
  );
}

/** z ~ N(0, I) [n, dim]. */
export function latents(seed: number, n: number, dim: number): tf.Tensor2D {
  return randomTensor(`z${seed}`, [n, dim]) as tf.Tensor2D;
}

/** Smooth 5-channel "slices" in [-1, 1]: a disc per sample with channel-dependent levels. */
export function realBatch(seed: number, n: number, size: number, channels = 5): tf.Tensor4D {
  const rng = createRng(seed);
  const values = new Float32Array(n * size * size * channels);
  for (let i = 0; i < n; i++) {
    const cy = rng.uniform(0.3, 0.7) * size;
    const cx = rng.uniform(0.3, 0.7) * size;
    const r = rng.uniform(0.15, 0.3) * size;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r;
        for (let c = 0; c < channels; c++) {
          values[((i * size + y) * size + x) * channels + c] = inside ? 0.2 * c - 0.3 : -1;
        }
      }
    }
  }
  return tf.tensor4d(values, [n, size, size, channels]);
}

export function snapshot(model: TrainableModel): Map<string, Float32Array> {
  return new Map(
    Object.entries(model.variables).map(([name, v]) => [name, (v.dataSync() as Float32Array).slice()]),
  );
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Names of the variables whose values differ between two snapshots. */
export function changedVariables(
  before: Map<string, Float32Array>,
  after: Map<string, Float32Array>,
): string[] {
  return [...before.keys()].filter((name) => maxAbsDiff(before.get(name)!, after.get(name)!) > 0);
}

/**
 * Direct upfirdn along one axis of a plain array: zero insertion, pad/crop, true convolution, decimation (the
 * definition, with loops).
 */
export function upfirdnReference(
  x: readonly number[],
  f: readonly number[],
  up: number,
  down: number,
  pad0: number,
  pad1: number,
): number[] {
  const upsampled: number[] = new Array<number>(x.length * up).fill(0);
  x.forEach((v, i) => (upsampled[i * up] = v));
  const padded: number[] = [];
  for (let j = -pad0; j < upsampled.length + pad1; j++) padded.push(upsampled[j] ?? 0);
  const filtered: number[] = [];
  for (let i = 0; i + f.length <= padded.length; i++) {
    let sum = 0;
    for (let k = 0; k < f.length; k++) sum += padded[i + k]! * f[f.length - 1 - k]!;
    filtered.push(sum);
  }
  return filtered.filter((_, i) => i % down === 0);
}

/** upfirdnReference separably over H then W of an NHWC array. */
export function upfirdn2dReference(
  data: Float32Array,
  shape: readonly [number, number, number, number],
  f: readonly number[],
  up: number,
  down: number,
  padding: readonly [number, number, number, number],
): { data: Float32Array; shape: [number, number, number, number] } {
  const [n, h, w, c] = shape;
  const [px0, px1, py0, py1] = padding;
  const at = (hh: number, ww: number) => (ni: number, y: number, x: number, ci: number) =>
    ((ni * hh + y) * ww + x) * c + ci;
  // along H
  const h2 = upfirdnReference(new Array<number>(h).fill(0), f, up, down, py0, py1).length;
  const mid = new Float32Array(n * h2 * w * c);
  for (let ni = 0; ni < n; ni++) {
    for (let x = 0; x < w; x++) {
      for (let ci = 0; ci < c; ci++) {
        const column = Array.from({ length: h }, (_, y) => data[at(h, w)(ni, y, x, ci)]!);
        upfirdnReference(column, f, up, down, py0, py1).forEach((v, y) => (mid[at(h2, w)(ni, y, x, ci)] = v));
      }
    }
  }
  const w2 = upfirdnReference(new Array<number>(w).fill(0), f, up, down, px0, px1).length;
  const out = new Float32Array(n * h2 * w2 * c);
  for (let ni = 0; ni < n; ni++) {
    for (let y = 0; y < h2; y++) {
      for (let ci = 0; ci < c; ci++) {
        const row = Array.from({ length: w }, (_, x) => mid[at(h2, w)(ni, y, x, ci)]!);
        upfirdnReference(row, f, up, down, px0, px1).forEach((v, x) => (out[at(h2, w2)(ni, y, x, ci)] = v));
      }
    }
  }
  return { data: out, shape: [n, h2, w2, c] };
}

export interface LocalGanStep {
  dLoss: number;
  gLoss: number;
  r1?: number;
}

/**
 * One local training iteration with the shared losses (gan/losses): D step on the non-saturating loss (+ R1
 * γ/2·E‖∇D(x)‖² when r1Gamma is given), then G step on the non-saturating loss. Adam from the caller.
 */
export function localGanStep(
  g: GeneratorModel,
  d: DiscriminatorModel,
  optimizers: { g: tf.Optimizer; d: tf.Optimizer },
  reals: tf.Tensor4D,
  seed: number,
  r1Gamma?: number,
): LocalGanStep {
  const n = reals.shape[0];
  const z = latents(seed, n, g.latentDim);
  const noiseSeed = seed * 7 + 1;
  const score = (x: tf.Tensor4D) => d.score(x, true);
  let r1Value: number | undefined;
  const dLoss = optimizers.d.minimize(
    () => {
      const fakes = g.generate(z, { training: true, noiseSeed });
      let loss = nonSaturatingDiscriminatorLoss(score(reals), score(fakes));
      if (r1Gamma !== undefined) {
        const penalty = r1Penalty(score, reals, { gamma: r1Gamma });
        r1Value = penalty.dataSync()[0];
        loss = tf.add(loss, penalty);
      }
      return loss;
    },
    true,
    Object.values(d.variables),
  )!;
  const gLoss = optimizers.g.minimize(
    () => nonSaturatingGeneratorLoss(score(g.generate(z, { training: true, noiseSeed }))),
    true,
    Object.values(g.variables),
  )!;
  const result = { dLoss: dLoss.dataSync()[0]!, gLoss: gLoss.dataSync()[0]!, r1: r1Value };
  tf.dispose([dLoss, gLoss, z]);
  return result;
}
