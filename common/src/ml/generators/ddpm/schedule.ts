// Noise schedules of the diffusion model and the forward process q(x_t | x_0).
//
// Index convention (Ho et al. 2020 code, OpenAI improved-diffusion): timesteps are 0-based, t ∈ [0, T); index
// t holds β_{t+1} of the paper's 1-based notation, so x_t (0-based) = √ᾱ_t x_0 + √(1−ᾱ_t) ε with ᾱ_t =
// ∏_{s≤t} α_s, and ᾱ_{-1} = 1 (the clean image). Every table is float64; tensors get float32 copies.
import * as tf from '@tensorflow/tfjs';

export type NoiseScheduleKind = 'linear' | 'cosine';

export interface NoiseSchedule {
  readonly kind: NoiseScheduleKind;
  /** T: number of diffusion steps. */
  readonly timesteps: number;
  /** β_t */
  readonly betas: Float64Array;
  /** α_t = 1 − β_t */
  readonly alphas: Float64Array;
  /** ᾱ_t = ∏_{s ≤ t} α_s */
  readonly alphasCumprod: Float64Array;
  /** ᾱ_{t−1}, with ᾱ_{−1} = 1 */
  readonly alphasCumprodPrev: Float64Array;
  readonly sqrtAlphasCumprod: Float64Array;
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  /** 1/√ᾱ_t and √(1/ᾱ_t − 1): x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε̂ */
  readonly sqrtRecipAlphasCumprod: Float64Array;
  readonly sqrtRecipM1AlphasCumprod: Float64Array;
  /** β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), the variance of q(x_{t−1} | x_t, x_0) (0 at t = 0) */
  readonly posteriorVariance: Float64Array;
  /** log β̃_t with t = 0 replaced by β̃_1 (β̃_0 = 0 has no logarithm), as in Ho et al. */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** μ̃_t(x_t, x_0) = coef1_t · x_0 + coef2_t · x_t */
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;
}

/**
 * Ho et al.'s linear schedule, β from 1e-4 to 0.02 for T = 1000, scaled by 1000/T for other T
 * (improved-diffusion's get_named_beta_schedule('linear'), which keeps ᾱ_T about the same for any T): T =
 * 4000 gives 2.5e-5 … 0.005.
 */
export function linearBetas(timesteps: number): Float64Array {
  checkTimesteps(timesteps);
  const scale = 1000 / timesteps;
  const start = scale * 1e-4;
  const end = scale * 0.02;
  if (end >= 1)
    throw new Error(`linear schedule: T = ${timesteps} gives β_T = ${end} ≥ 1 (T must exceed 20)`);
  const betas = new Float64Array(timesteps);
  // np.linspace(start, end, T)
  for (let t = 0; t < timesteps; t++)
    betas[t] = timesteps === 1 ? start : start + ((end - start) * t) / (timesteps - 1);
  return betas;
}

/** ᾱ(τ) of the cosine schedule, τ ∈ [0, 1]: cos²(((τ + s) / (1 + s)) · π/2). */
export function cosineAlphaBar(tau: number, s = 0.008): number {
  return Math.cos((((tau + s) / (1 + s)) * Math.PI) / 2) ** 2;
}

/**
 * Nichol & Dhariwal's cosine schedule: β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), maxBeta), s = 0.008, maxBeta =
 * 0.999.
 */
export function cosineBetas(timesteps: number, s = 0.008, maxBeta = 0.999): Float64Array {
  checkTimesteps(timesteps);
  const betas = new Float64Array(timesteps);
  for (let t = 0; t < timesteps; t++) {
    const ratio = cosineAlphaBar((t + 1) / timesteps, s) / cosineAlphaBar(t / timesteps, s);
    betas[t] = Math.min(1 - ratio, maxBeta);
  }
  return betas;
}

export function createNoiseSchedule(kind: NoiseScheduleKind, timesteps: number): NoiseSchedule {
  switch (kind) {
    case 'linear':
      return scheduleFromBetas('linear', linearBetas(timesteps));
    case 'cosine':
      return scheduleFromBetas('cosine', cosineBetas(timesteps));
    default:
      throw new Error(`unknown noise schedule '${String(kind)}' (linear, cosine)`);
  }
}

/** Every derived table of a β sequence. */
export function scheduleFromBetas(kind: NoiseScheduleKind, betas: Float64Array): NoiseSchedule {
  const T = betas.length;
  checkTimesteps(T);
  for (const beta of betas) {
    if (!(beta > 0 && beta < 1)) throw new Error(`noise schedule: β = ${beta} outside (0, 1)`);
  }
  const table = () => new Float64Array(T);
  const alphas = table();
  const alphasCumprod = table();
  const alphasCumprodPrev = table();
  const sqrtAlphasCumprod = table();
  const sqrtOneMinusAlphasCumprod = table();
  const sqrtRecipAlphasCumprod = table();
  const sqrtRecipM1AlphasCumprod = table();
  const posteriorVariance = table();
  const posteriorLogVarianceClipped = table();
  const posteriorMeanCoef1 = table();
  const posteriorMeanCoef2 = table();
  let product = 1;
  for (let t = 0; t < T; t++) {
    const beta = betas[t]!;
    alphas[t] = 1 - beta;
    alphasCumprodPrev[t] = product;
    product *= 1 - beta;
    alphasCumprod[t] = product;
    sqrtAlphasCumprod[t] = Math.sqrt(product);
    sqrtOneMinusAlphasCumprod[t] = Math.sqrt(1 - product);
    sqrtRecipAlphasCumprod[t] = Math.sqrt(1 / product);
    sqrtRecipM1AlphasCumprod[t] = Math.sqrt(1 / product - 1);
    const prev = alphasCumprodPrev[t]!;
    posteriorVariance[t] = (beta * (1 - prev)) / (1 - product);
    posteriorMeanCoef1[t] = (beta * Math.sqrt(prev)) / (1 - product);
    posteriorMeanCoef2[t] = ((1 - prev) * Math.sqrt(1 - beta)) / (1 - product);
  }
  for (let t = 0; t < T; t++) {
    posteriorLogVarianceClipped[t] = Math.log(posteriorVariance[t === 0 && T > 1 ? 1 : t]!);
  }
  return {
    kind,
    timesteps: T,
    betas,
    alphas,
    alphasCumprod,
    alphasCumprodPrev,
    sqrtAlphasCumprod,
    sqrtOneMinusAlphasCumprod,
    sqrtRecipAlphasCumprod,
    sqrtRecipM1AlphasCumprod,
    posteriorVariance,
    posteriorLogVarianceClipped,
    posteriorMeanCoef1,
    posteriorMeanCoef2,
  };
}

function checkTimesteps(timesteps: number): void {
  if (!Number.isSafeInteger(timesteps) || timesteps < 1) {
    throw new Error(`noise schedule: T must be a positive integer (got ${timesteps})`);
  }
}

/** Throws unless every t is an integer in [0, T). */
export function checkTimestepIndices(schedule: NoiseSchedule, t: ArrayLike<number>): void {
  for (let i = 0; i < t.length; i++) {
    const value = t[i]!;
    if (!Number.isInteger(value) || value < 0 || value >= schedule.timesteps) {
      throw new RangeError(`timestep ${value} outside [0, ${schedule.timesteps})`);
    }
  }
}

/** table[t_i] per sample, as a [n, 1, 1, 1] float32 tensor that broadcasts over an NHWC batch. */
export function perSample(table: Float64Array, t: ArrayLike<number>): tf.Tensor4D {
  const values = Float32Array.from({ length: t.length }, (_, i) => table[t[i]!]!);
  return tf.tensor4d(values, [t.length, 1, 1, 1]);
}

/**
 * q(x_t | x_0): √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε, with one timestep per sample of the batch. Call inside tf.tidy.
 */
export function qSample(
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  t: ArrayLike<number>,
  noise: tf.Tensor4D,
): tf.Tensor4D {
  if (t.length !== x0.shape[0]) throw new Error(`qSample: ${t.length} timesteps for ${x0.shape[0]} images`);
  checkTimestepIndices(schedule, t);
  return tf.add(
    tf.mul(x0, perSample(schedule.sqrtAlphasCumprod, t)),
    tf.mul(noise, perSample(schedule.sqrtOneMinusAlphasCumprod, t)),
  );
}
