// StyleGAN's mapping network, as in StyleGAN2/3 (networks_stylegan2.MappingNetwork): z is normalised to unit
// second moment, then an MLP of equalized-LR dense layers with learning-rate multiplier 0.01 and lrelu·√2 gives w;
// w is broadcast to every style input of the synthesis network. A tracked average w̄ (EMA of the batch mean,
// β = 0.998, updated in training-mode calls) serves the truncation trick w̄ + ψ(w − w̄) when the caller does not
// pass its own averageLatent. Shared by StyleGAN 2 and 3.
import * as tf from '@tensorflow/tfjs';

import type { ParamFactory } from '../../layers/index.js';
import {
  createEqualizedDense,
  equalizedDense,
  leakyReluGain,
  pixelNorm,
  type EqualizedDenseLayer,
} from '../gan/layers.js';
import type { MappingOptions } from '../gan/types.js';

export interface MappingSpec {
  zDim: number;
  wDim: number;
  /** Dense layers (StyleGAN2: 8, StyleGAN3: 2). */
  layers: number;
  /** Learning-rate multiplier of the dense layers (0.01). */
  lrMultiplier: number;
  /** EMA decay of the tracked w̄ per training-mode call (0.998). */
  wAvgBeta: number;
}

export interface MappingNetwork {
  spec: MappingSpec;
  layers: EqualizedDenseLayer[];
  /**
   * w̄ [wDim]: a model variable (so it travels in weights blobs and FedAvg averages it) that receives no gradient
   * (it never enters a training-mode forward), updated by assignment in training-mode mapping calls.
   */
  wAvg: tf.Variable;
}

export function createMapping(params: ParamFactory, spec: MappingSpec): MappingNetwork {
  if (!(spec.layers >= 1)) throw new Error(`mapping: needs at least one layer, got ${spec.layers}`);
  const layers = Array.from({ length: spec.layers }, (_, i) =>
    createEqualizedDense(params.scope(`fc${i}`), {
      inFeatures: i === 0 ? spec.zDim : spec.wDim,
      outFeatures: spec.wDim,
      lrMultiplier: spec.lrMultiplier,
    }),
  );
  const wAvg = params.variable('w_avg', [spec.wDim], { kind: 'zeros' });
  return { spec, layers, wAvg };
}

/** z [N, zDim] -> w [N, wDim] (no truncation, no w̄ update). */
export function mapToW(mapping: MappingNetwork, z: tf.Tensor2D): tf.Tensor2D {
  if (z.shape[1] !== mapping.spec.zDim) {
    throw new Error(`mapping: z has ${z.shape[1]} features, expected ${mapping.spec.zDim}`);
  }
  let x: tf.Tensor2D = pixelNorm(z);
  for (const layer of mapping.layers) x = leakyReluGain(equalizedDense(x, layer));
  return x;
}

/**
 * z [N, zDim] -> ws [N, numWs, wDim] with the options of the GeneratorModel contract: in training mode w̄ is
 * updated from this batch; style mixing takes layers [crossover, numWs) from a second batch of latents;
 * truncation (ψ, cutoff) pulls layers [0, cutoff) towards options.averageLatent ?? the tracked w̄.
 */
export function mapLatents(
  mapping: MappingNetwork,
  z: tf.Tensor2D,
  numWs: number,
  options: MappingOptions = {},
): tf.Tensor3D {
  const w = mapToW(mapping, z);
  if (options.training) updateAverage(mapping, w);
  let ws: tf.Tensor3D = broadcastW(w, numWs);
  if (options.styleMixing) {
    const { latents, crossover } = options.styleMixing;
    if (latents.shape[0] !== z.shape[0]) throw new Error('style mixing: latents must match the batch');
    if (crossover > 0 && crossover < numWs) {
      const mixed = broadcastW(mapToW(mapping, latents), numWs);
      const keep = tf.slice(ws, [0, 0, 0], [-1, crossover, -1]);
      const take = tf.slice(mixed, [0, crossover, 0], [-1, numWs - crossover, -1]);
      ws = tf.concat([keep, take], 1);
    }
  }
  const psi = options.truncationPsi ?? 1;
  if (psi !== 1) ws = truncate(ws, options.averageLatent ?? mapping.wAvg, psi, options.truncationCutoff);
  return ws;
}

function broadcastW(w: tf.Tensor2D, numWs: number): tf.Tensor3D {
  // A broadcast multiply rather than tf.tile (see minibatchStddevBroadcast on Tile's second-order gradient).
  return tf.mul(tf.expandDims(w, 1), tf.ones([1, numWs, 1])) as tf.Tensor3D;
}

/** w̄ + ψ(w − w̄) on style layers [0, cutoff). ψ = 0 gives exactly w̄. */
export function truncate(ws: tf.Tensor3D, average: tf.Tensor, psi: number, cutoff?: number): tf.Tensor3D {
  const [n, numWs, wDim] = ws.shape;
  const avg = tf.reshape(average, [1, 1, wDim]);
  const pulled = tf.add(avg, tf.mul(tf.sub(ws, avg), psi)) as tf.Tensor3D;
  const limit = Math.min(cutoff ?? numWs, numWs);
  if (limit >= numWs) return pulled;
  if (limit <= 0) return ws;
  return tf.concat(
    [tf.slice(pulled, [0, 0, 0], [n, limit, wDim]), tf.slice(ws, [0, limit, 0], [n, numWs - limit, wDim])],
    1,
  );
}

/** w̄ ← mean_batch(w) + β(w̄ − mean_batch(w)) (the official lerp), by assignment: no gradient flows. */
function updateAverage(mapping: MappingNetwork, w: tf.Tensor2D): void {
  tf.tidy(() => {
    const batchMean = tf.mean(w, 0);
    const next = tf.add(batchMean, tf.mul(tf.sub(mapping.wAvg, batchMean), mapping.spec.wAvgBeta));
    mapping.wAvg.assign(next);
  });
}
