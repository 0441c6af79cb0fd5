// The diffusion model (DDPM, Ho et al. 2020): a denoiser U-Net plus a noise schedule. Training minimises the
// simple loss ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖² with t uniform; sampling runs either the ancestral sampler
// (all T steps) or DDIM (Song et al. 2021) on a sub-sequence of S steps. Both are deterministic for a seed,
// and every image's noise comes from its own stream (seed, image index): an image does not depend on the
// batch size.
//
// Images are slice bytes scaled to [-1, 1] (byte / 127.5 − 1), channels [T1, T2, FLAIR, T1ce, annotation];
// samples go back to NHWC uint8 bytes with the annotation channel snapped to the nearest of 0/51/102/204.
import * as tf from '@tensorflow/tfjs';

import { ANNOTATION_OF_CANONICAL, decodeAnnotation, SLICE_CHANNELS } from '../../../slices/presets.js';
import { createRng, type Rng } from '../../../util/rng.js';
import type { ModelArchitecture, TrainableModel } from '../../model.js';
import {
  checkTimestepIndices,
  createNoiseSchedule,
  perSample,
  qSample,
  type NoiseSchedule,
  type NoiseScheduleKind,
} from './schedule.js';
import {
  buildDiffusionUNet,
  DIFFUSION_UNET_PROFILES,
  validateDiffusionUNetConfig,
  type DiffusionUNet,
  type DiffusionUNetConfig,
  type DiffusionUNetProfile,
} from './unet-denoiser.js';

/** The architecture name under which weights blobs of this model are stored and rebuilt. */
export const DDPM_ARCHITECTURE_NAME = 'ddpm';

/**
 * What the network outputs: 'epsilon' the noise ε (Ho et al., the paper), or 'v' = √ᾱ_t ε − √(1−ᾱ_t) x_0
 * (Salimans & Ho 2022). x̂_0 from ε̂ divides the network's error by √ᾱ_t (≈ 0.006 at T = 1000), so an ε-model
 * must learn its near-identity map at high t very precisely before samples lose their white noise; x̂_0 from v̂
 * multiplies it by √(1−ᾱ_t) ≤ 1, which is what a 15-minute CPU run needs.
 */
export type DdpmPrediction = 'epsilon' | 'v';

/** The denoiser's hyper-parameters plus the diffusion process (sampling needs both). */
export interface DdpmConfig extends DiffusionUNetConfig {
  /** T, diffusion steps (the paper: 4000). */
  timesteps: number;
  schedule: NoiseScheduleKind;
  /** The network's target (absent: 'epsilon', as every config made before v-prediction). */
  prediction?: DdpmPrediction;
  /** Train with black as a bound, not a target (see diffusionLoss; absent: false, as configs made before it). */
  censorBlack?: boolean;
}

export type DdpmProfile = DiffusionUNetProfile;

/** T per profile: the paper's 4000; Ho et al.'s 1000 for CPU runs; 50 for tests (full ancestral runs). */
const TIMESTEPS: Record<DdpmProfile, number> = { paper: 4000, cpu: 1000, cpu32: 1000, tiny: 50 };

/** The paper's ε for its profile and the tests'; v for the CPU profiles (see DdpmPrediction). */
const PREDICTION: Record<DdpmProfile, DdpmPrediction> = {
  paper: 'epsilon',
  cpu: 'v',
  cpu32: 'v',
  tiny: 'epsilon',
};

/** Black as a bound (diffusionLoss) for the CPU profiles; the paper's and the tests' train as published. */
const CENSOR_BLACK: Record<DdpmProfile, boolean> = { paper: false, cpu: true, cpu32: true, tiny: false };

export function ddpmConfig(profile: DdpmProfile, overrides: Partial<DdpmConfig> = {}): DdpmConfig {
  if (!Object.hasOwn(DIFFUSION_UNET_PROFILES, profile)) {
    throw new Error(`unknown ddpm profile '${profile}' (${Object.keys(DIFFUSION_UNET_PROFILES).join(', ')})`);
  }
  const unet = structuredClone(DIFFUSION_UNET_PROFILES[profile]) as unknown as DiffusionUNetConfig;
  return {
    ...unet,
    timesteps: TIMESTEPS[profile],
    schedule: 'linear',
    prediction: PREDICTION[profile],
    ...(CENSOR_BLACK[profile] ? { censorBlack: true } : {}),
    ...structuredClone(overrides),
  };
}

/** The architecture record of a profile (what a weights blob carries and buildDdpmFromArchitecture reads). */
export function ddpmArchitecture(
  profile: DdpmProfile,
  overrides: Partial<DdpmConfig> = {},
): ModelArchitecture {
  return {
    name: DDPM_ARCHITECTURE_NAME,
    config: ddpmConfig(profile, overrides) as unknown as Record<string, unknown>,
  };
}

/** ε_θ(x_t, t): the model, or a stand-in in tests. Must return a new tensor (the caller's tidy owns it). */
export type EpsilonPredictor = (x: tf.Tensor4D, timesteps: ArrayLike<number>) => tf.Tensor4D;

export interface DdpmModel extends TrainableModel {
  readonly config: DdpmConfig;
  readonly schedule: NoiseSchedule;
  readonly unet: DiffusionUNet;
  /** ε̂ for x_t [N, H, W, C] at per-image timesteps, whatever the network predicts. Call inside tf.tidy. */
  readonly predictEpsilon: EpsilonPredictor;
}

const PREDICTIONS: readonly DdpmPrediction[] = ['epsilon', 'v'];

/** ε = √(1−ᾱ_t) x_t + √ᾱ_t v (from x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε and v's definition). Call inside tf.tidy. */
export function epsilonFromV(
  schedule: NoiseSchedule,
  x: tf.Tensor4D,
  t: ArrayLike<number>,
  v: tf.Tensor4D,
): tf.Tensor4D {
  return tf.add(
    tf.mul(x, perSample(schedule.sqrtOneMinusAlphasCumprod, t)),
    tf.mul(v, perSample(schedule.sqrtAlphasCumprod, t)),
  );
}

export function buildDdpm(config: DdpmConfig, seed: number): DdpmModel {
  validateDiffusionUNetConfig(config);
  const prediction = config.prediction ?? 'epsilon';
  if (!PREDICTIONS.includes(prediction)) {
    throw new Error(`ddpm: unknown prediction '${String(prediction)}' (${PREDICTIONS.join(', ')})`);
  }
  const schedule = createNoiseSchedule(config.schedule, config.timesteps);
  if (config.censorBlack !== undefined && typeof config.censorBlack !== 'boolean') {
    throw new Error(`ddpm: censorBlack must be true or false, got ${JSON.stringify(config.censorBlack)}`);
  }
  const { timesteps: _t, schedule: _s, prediction: _p, censorBlack: _c, ...unetConfig } = config;
  const unet = buildDiffusionUNet(unetConfig, seed);
  const frozen: DdpmConfig = {
    ...unet.config,
    timesteps: config.timesteps,
    schedule: config.schedule,
    // Recorded only when not the default, so older configs keep the architecture key they always had.
    ...(prediction === 'epsilon' ? {} : { prediction }),
    ...(config.censorBlack ? { censorBlack: true } : {}),
  };
  return {
    architecture: { name: DDPM_ARCHITECTURE_NAME, config: frozen as unknown as Record<string, unknown> },
    variables: unet.variables,
    config: frozen,
    schedule,
    unet,
    predictEpsilon:
      prediction === 'v'
        ? (x, t) => epsilonFromV(schedule, x, t, unet.forward(x, t))
        : (x, t) => unet.forward(x, t),
    dispose: () => unet.dispose(),
  };
}

const CONFIG_FIELDS: readonly (keyof DdpmConfig)[] = [
  'imageSize',
  'imageChannels',
  'baseChannels',
  'channelMults',
  'numResBlocks',
  'attentionResolutions',
  'numHeads',
  'groups',
  'timesteps',
  'schedule',
];

/** Rebuilds the model an architecture record describes (e.g. to load a weights blob into). */
export function buildDdpmFromArchitecture(architecture: ModelArchitecture, seed = 0): DdpmModel {
  if (architecture.name !== DDPM_ARCHITECTURE_NAME) {
    throw new Error(
      `buildDdpmFromArchitecture: architecture '${architecture.name}' is not '${DDPM_ARCHITECTURE_NAME}'`,
    );
  }
  const missing = CONFIG_FIELDS.filter((field) => !(field in architecture.config));
  if (missing.length > 0)
    throw new Error(`buildDdpmFromArchitecture: ddpm config lacks ${missing.join(', ')}`);
  return buildDdpm(architecture.config as unknown as DdpmConfig, seed);
}

// -----------------------------------------------------------------------------------------------------------
// Training

/**
 * The simple loss of Ho et al.: mean over every element of (net(q_sample(x_0, t, ε), t) − target)², the target
 * ε, or v = √ᾱ_t ε − √(1−ᾱ_t) x_0 for a v-network. `network` is the raw network (what it outputs is what
 * `prediction` says). Call inside tf.tidy (or tf.variableGrads).
 *
 * `censorBlack`: where x_0 is black (−1), only a residual r = net − target < 0 counts. The x̂_0 the prediction
 * implies is x_0 − √(1−ᾱ_t) r (v) or x_0 − √(1−ᾱ_t)/√ᾱ_t r (ε), so r < 0 is exactly an x̂_0 above black; one
 * below black costs nothing, and the sampler clips it to black. Why: skull-stripped slices are black outside the
 * brain in every channel and "no tumour" is black in the annotation, a point mass at the bound of the range. Charged
 * from both sides, a 15-minute cpu32 model left its x̂_0 4–5 bytes above black over a third of the background at
 * t = 100–400, a haze every sample kept. (A softplus floor on x̂_0 inside the model instead cleared the background
 * but starved brain pixels whose early predictions fell below the floor of gradient: noisy brains, worse histograms.)
 */
export function diffusionLoss(
  network: EpsilonPredictor,
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  timesteps: ArrayLike<number>,
  noise: tf.Tensor4D,
  prediction: DdpmPrediction = 'epsilon',
  censorBlack = false,
): tf.Scalar {
  const xt = qSample(schedule, x0, timesteps, noise);
  const target =
    prediction === 'v'
      ? tf.sub(
          tf.mul(noise, perSample(schedule.sqrtAlphasCumprod, timesteps)),
          tf.mul(x0, perSample(schedule.sqrtOneMinusAlphasCumprod, timesteps)),
        )
      : noise;
  const residual = tf.sub(network(xt, timesteps), target);
  const counted = censorBlack ? tf.where(tf.lessEqual(x0, -1), tf.minimum(residual, 0), residual) : residual;
  return tf.mean(tf.square(counted));
}

/**
 * The simple loss and its gradients by the model's stable variable names (tf.variableGrads keys by the
 * engine's names). The caller disposes the loss and the gradients.
 */
export function ddpmLossAndGrads(
  model: DdpmModel,
  x0: tf.Tensor4D,
  timesteps: ArrayLike<number>,
  noise: tf.Tensor4D,
): { loss: tf.Scalar; grads: Record<string, tf.Tensor> } {
  const { value, grads } = tf.variableGrads(
    () =>
      diffusionLoss(
        (x, t) => model.unet.forward(x, t),
        model.schedule,
        x0,
        timesteps,
        noise,
        model.config.prediction,
        model.config.censorBlack,
      ),
    Object.values(model.variables),
  );
  const byName: Record<string, tf.Tensor> = {};
  for (const [name, variable] of Object.entries(model.variables)) byName[name] = grads[variable.name]!;
  return { loss: value, grads: byName };
}

/** `count` standard normal deviates from `rng` (Box–Muller, so backend-independent). */
export function normals(rng: Rng, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = rng.normal();
  return out;
}

// -----------------------------------------------------------------------------------------------------------
// Single sampling steps (pure: call inside tf.tidy)

/**
 * Variance of the ancestral sampler: 'small' = the posterior variance β̃_t (Ho et al.'s lower bound), 'large'
 * = β_t (their upper bound; improved-diffusion's choice when σ is not learned, likely the paper's setting).
 */
export type AncestralVariance = 'small' | 'large';

export interface StepOptions {
  /** Clip x̂_0 to [-1, 1] before forming the next iterate (both reference codes do; default true). */
  clipDenoised?: boolean;
}

/** x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε̂, optionally clipped to [-1, 1]. */
export function predictX0(
  schedule: NoiseSchedule,
  x: tf.Tensor4D,
  t: ArrayLike<number>,
  epsilon: tf.Tensor4D,
  clip: boolean,
): tf.Tensor4D {
  const x0: tf.Tensor4D = tf.sub(
    tf.mul(x, perSample(schedule.sqrtRecipAlphasCumprod, t)),
    tf.mul(epsilon, perSample(schedule.sqrtRecipM1AlphasCumprod, t)),
  );
  return clip ? tf.clipByValue(x0, -1, 1) : x0;
}

/**
 * One ancestral step x_t → x_{t−1}: μ̃_t(x_t, x̂_0) + σ_t z, with σ_t² = β̃_t or β_t and no noise at t = 0.
 * `noise` z is required when any t > 0.
 */
export function ancestralStep(
  predict: EpsilonPredictor,
  schedule: NoiseSchedule,
  x: tf.Tensor4D,
  t: ArrayLike<number>,
  noise: tf.Tensor4D | undefined,
  options: StepOptions & { variance?: AncestralVariance } = {},
): tf.Tensor4D {
  checkTimestepIndices(schedule, t);
  const x0 = predictX0(schedule, x, t, predict(x, t), options.clipDenoised ?? true);
  const mean: tf.Tensor4D = tf.add(
    tf.mul(x0, perSample(schedule.posteriorMeanCoef1, t)),
    tf.mul(x, perSample(schedule.posteriorMeanCoef2, t)),
  );
  const variance = (options.variance ?? 'large') === 'large' ? schedule.betas : schedule.posteriorVariance;
  const sigma = Float64Array.from({ length: t.length }, (_, i) =>
    t[i] === 0 ? 0 : Math.sqrt(variance[t[i]!]!),
  );
  if (sigma.every((s) => s === 0)) return mean;
  if (!noise) throw new Error('ancestralStep: noise is required for t > 0');
  return tf.add(mean, tf.mul(noise, tf.tensor4d(Float32Array.from(sigma), [sigma.length, 1, 1, 1])));
}

/**
 * One DDIM step x_t → x_{t_prev} (t_prev = −1: to x_0, ᾱ_{−1} = 1):
 *   x̂_0 as in predictX0, ε' = (x_t − √ᾱ_t x̂_0)/√(1−ᾱ_t) (= ε̂ unless x̂_0 was clipped),
 *   σ = η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev),
 *   x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε' + σ z.
 * η = 0 (default) is deterministic and needs no noise. All images share t here (the samplers' case).
 */
export function ddimStep(
  predict: EpsilonPredictor,
  schedule: NoiseSchedule,
  x: tf.Tensor4D,
  t: number,
  tPrev: number,
  noise?: tf.Tensor4D,
  options: StepOptions & { eta?: number } = {},
): tf.Tensor4D {
  const n = x.shape[0];
  const ts = new Array<number>(n).fill(t);
  checkTimestepIndices(schedule, ts);
  if (!(Number.isInteger(tPrev) && tPrev >= -1 && tPrev < t))
    throw new RangeError(`ddimStep: t_prev ${tPrev} for t ${t}`);
  const eta = options.eta ?? 0;
  const alphaBar = schedule.alphasCumprod[t]!;
  const alphaBarPrev = tPrev < 0 ? 1 : schedule.alphasCumprod[tPrev]!;
  const epsilonHat = predict(x, ts);
  const x0 = predictX0(schedule, x, ts, epsilonHat, options.clipDenoised ?? true);
  const epsilon = tf.div(tf.sub(x, tf.mul(x0, Math.sqrt(alphaBar))), Math.sqrt(1 - alphaBar));
  const sigma = eta * Math.sqrt((1 - alphaBarPrev) / (1 - alphaBar)) * Math.sqrt(1 - alphaBar / alphaBarPrev);
  let next: tf.Tensor4D = tf.add(
    tf.mul(x0, Math.sqrt(alphaBarPrev)),
    tf.mul(epsilon, Math.sqrt(Math.max(1 - alphaBarPrev - sigma * sigma, 0))),
  );
  if (sigma > 0) {
    if (!noise) throw new Error('ddimStep: noise is required for η > 0');
    next = tf.add(next, tf.mul(noise, sigma));
  }
  return next;
}

/**
 * DDIM's uniform sub-sequence (improved-diffusion's "ddimS" respacing): 0, k, 2k, … with k = ⌊T/S⌋, S
 * entries, ascending. The sampler walks it backwards, from the last entry to 0 and then to the clean image.
 */
export function ddimTimesteps(timesteps: number, steps: number): number[] {
  if (!Number.isSafeInteger(steps) || steps < 1 || steps > timesteps) {
    throw new RangeError(`DDIM: ${steps} steps for T = ${timesteps} (1 ≤ S ≤ T)`);
  }
  const stride = Math.floor(timesteps / steps);
  return Array.from({ length: steps }, (_, i) => i * stride);
}

// -----------------------------------------------------------------------------------------------------------
// Samplers

export type SamplerOptions =
  | ({ method: 'ancestral'; variance?: AncestralVariance } & StepOptions)
  | ({ method: 'ddim'; steps: number; eta?: number } & StepOptions);

export interface SampleOptions {
  count: number;
  seed: number | string;
  /** Images denoised together (memory); results do not depend on it. Default 16. */
  batchSize?: number;
  /** Default DDIM with 50 steps, η = 0. */
  sampler?: SamplerOptions;
  /** Index of the first image: a set can be made in parts (image i's noise depends on (seed, i) only). */
  firstIndex?: number;
  /** Image side (default: the model's imageSize). */
  size?: number;
  signal?: AbortSignal;
  /** After every denoising step: images finished so far, and the steps of the current batch. */
  onProgress?: (progress: { images: number; count: number; step: number; steps: number }) => void;
}

/**
 * Draws `count` images; returns NHWC uint8 bytes ([count, size, size, channels], slice-store layout) with the
 * annotation channel on valid levels. Deterministic for (seed, sampler, weights).
 */
export async function sampleDdpm(model: DdpmModel, options: SampleOptions): Promise<Uint8Array> {
  const size = options.size ?? model.config.imageSize;
  const channels = model.config.imageChannels;
  const sampler: SamplerOptions = options.sampler ?? { method: 'ddim', steps: 50 };
  const batchSize = options.batchSize ?? 16;
  const firstIndex = options.firstIndex ?? 0;
  if (!Number.isSafeInteger(options.count) || options.count < 0)
    throw new RangeError(`sampleDdpm: count ${options.count}`);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1)
    throw new RangeError(`sampleDdpm: batchSize ${batchSize}`);
  const pixelValues = size * size * channels;
  const out = new Uint8Array(options.count * pixelValues);
  const root = createRng(options.seed);
  const schedule = model.schedule;
  const sequence =
    sampler.method === 'ddim'
      ? ddimTimesteps(schedule.timesteps, sampler.steps)
      : Array.from({ length: schedule.timesteps }, (_, i) => i);
  const predict = model.predictEpsilon;

  for (let start = 0; start < options.count; start += batchSize) {
    const n = Math.min(batchSize, options.count - start);
    const rngs = Array.from({ length: n }, (_, k) => root.fork(`image-${firstIndex + start + k}`));
    const drawNoise = (): tf.Tensor4D => {
      const values = new Float32Array(n * pixelValues);
      rngs.forEach((rng, k) => values.set(normals(rng, pixelValues), k * pixelValues));
      return tf.tensor4d(values, [n, size, size, channels]);
    };
    let x = drawNoise();
    try {
      for (let i = sequence.length - 1; i >= 0; i--) {
        options.signal?.throwIfAborted();
        const t = sequence[i]!;
        // Fresh noise only where a step uses it, so each image's stream advances the same way in every run.
        const needsNoise = sampler.method === 'ancestral' ? t > 0 : (sampler.eta ?? 0) > 0 && i > 0;
        const noise = needsNoise ? drawNoise() : undefined;
        let next: tf.Tensor4D;
        try {
          next = tf.tidy(() =>
            sampler.method === 'ancestral'
              ? ancestralStep(predict, schedule, x, new Array<number>(n).fill(t), noise, sampler)
              : ddimStep(predict, schedule, x, t, i > 0 ? sequence[i - 1]! : -1, noise, sampler),
          );
        } finally {
          noise?.dispose();
        }
        x.dispose();
        x = next;
        options.onProgress?.({
          images: start,
          count: options.count,
          step: sequence.length - i,
          steps: sequence.length,
        });
        // Let timers and I/O (progress events, an abort) through between steps.
        await new Promise((resolve) => setImmediate(resolve));
      }
      out.set(toSliceBytes((await x.data()) as Float32Array, channels), start * pixelValues);
    } finally {
      x.dispose();
    }
  }
  return out;
}

const ANNOTATION_CHANNEL = SLICE_CHANNELS.indexOf('seg');

/**
 * [-1, 1] floats (NHWC, `channels` per pixel) → bytes: round((x + 1) · 127.5) clamped to [0, 255]; the
 * annotation channel (the last of the 5 slice channels) goes to the nearest of 0/51/102/204
 * (decodeAnnotation's levels).
 */
export function toSliceBytes(values: Float32Array, channels: number): Uint8Array {
  const out = new Uint8Array(values.length);
  const annotation = channels === SLICE_CHANNELS.length ? ANNOTATION_CHANNEL : -1;
  for (let i = 0; i < values.length; i++) {
    const byte = Math.min(255, Math.max(0, (values[i]! + 1) * 127.5));
    out[i] =
      i % channels === annotation ? ANNOTATION_OF_CANONICAL[decodeAnnotation(byte)]! : Math.round(byte);
  }
  return out;
}

/** Slice bytes → [-1, 1] floats (byte / 127.5 − 1), what the model trains on. */
export function fromSliceBytes(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! / 127.5 - 1;
  return out;
}
