// The contract between the GAN architectures (progan/, stylegan1/, stylegan2/, stylegan3/) and the shared GAN
// machinery (the 'gan' training task, losses, sampling). An architecture module builds a generator and a
// discriminator that implement the interfaces below and registers itself with registerGanArchitecture (see
// registry.ts) at import time. Everything here is additive-only: fields are never renamed or removed.
//
// Conventions every implementation follows:
// - Images are NHWC float32 with GAN_CHANNELS = 5 channels in slice-store order [T1, T2, FLAIR, T1ce, annotation],
//   slice bytes scaled to [-1, 1] (byte / 127.5 - 1). A generator's output is about in [-1, 1] (no final tanh is
//   required; sampling clips).
// - Models are functional (common/src/ml/layers): named tf.Variables from a ParamFactory, pure forward functions.
//   Forward functions must be called inside tf.tidy (or their outputs disposed) and must not keep tensors.
// - Every forward function must be differentiable twice w.r.t. its inputs and variables where the losses need it:
//   R1 and WGAN-GP take d/dθ of ‖∇_x D(x)‖², path-length regularisation d/dθ of ‖∇_w (G(w)·y)‖. Use tf ops only
//   (no dataSync / JS loops over values inside forward passes).
// - Deterministic: the same weights, inputs and seeds give the same outputs; all randomness inside a forward pass
//   comes from seeds passed in the options (tf.randomNormal/randomUniform with an explicit seed), never Math.random.
import type * as tf from '@tensorflow/tfjs';

import type { ModelArchitecture, TrainableModel } from '../../model.js';
import type { OptimizerSpec } from '../../training/optimizers.js';

/** Channels of a generated slice: T1, T2, FLAIR, T1ce, annotation (the slice store's order). */
export const GAN_CHANNELS = 5;
/** Index of the annotation (tumour label) channel. */
export const ANNOTATION_CHANNEL = 4;

/** Registered architecture names. */
export type GanArchitectureName = 'progan' | 'stylegan1' | 'stylegan2' | 'stylegan3' | (string & {});

/** Named sizes every architecture provides (see GanArchitecture.profiles). */
export type GanProfileName = 'paper' | 'cpu' | 'cpu32' | 'tiny';

/**
 * Where training is, handed to setProgress() before every phase of every step (in every worker, with identical
 * values). Progressive growing (ProGAN) derives its current level and fade-in alpha from it. Implementations
 * must treat it as a pure function input: no accumulated state, because a resumed run starts calling it at the
 * resume step.
 */
export interface GanTrainingProgress {
  /** 0-based index of the step being computed (0 .. totalSteps-1). */
  step: number;
  totalSteps: number;
  /** Global batch size (images per step over all workers). */
  batchSize: number;
  /** Real images shown to D before this step: step · batchSize (ProGAN schedules in these, "kimg"). */
  imagesSeen: number;
}

/** Options of a mapping network (style-based generators): z -> per-layer styles w. */
export interface MappingOptions {
  /**
   * Truncation trick: w' = w̄ + ψ·(w − w̄). Default 1 (none). Needs `averageLatent` for mapping generators (see
   * averageLatent() in sampling.ts, which computes w̄ from the generator itself). A generator without a mapping
   * network may implement truncation in z space (z·ψ) or ignore it.
   */
  truncationPsi?: number;
  /** Apply truncation only to style layers [0, truncationCutoff) (StyleGAN's truncation_cutoff); default all. */
  truncationCutoff?: number;
  /** w̄ [wDim]: the mean of w over many z (required when truncationPsi !== 1 and the generator maps latents). */
  averageLatent?: tf.Tensor1D;
  /**
   * Style mixing regularisation (training only): layers [crossover, numStyleLayers) take their style from
   * `latents` (a second z batch of the same shape) instead of z. The task draws it per batch (StyleGAN2 does
   * once per batch with probability styleMixingProbability, crossover uniform in [1, numStyleLayers)).
   */
  styleMixing?: { latents: tf.Tensor2D; crossover: number };
  /** Training mode (dropout/noise behaviours that differ); default false. */
  training?: boolean;
}

/** Options of the synthesis network / the whole generator. */
export interface SynthesisOptions {
  /**
   * Seed of per-pixel noise inputs (StyleGAN's noise_mode 'random', drawn with tf.randomNormal(…, seed)).
   * undefined: the deterministic "const" noise (StyleGAN2's stored noise buffers, or zeros). The training task
   * passes a fresh seed every step; sampling passes one derived from its seed, so samples are reproducible.
   */
  noiseSeed?: number;
  /** Training mode; default false. */
  training?: boolean;
}

export type GenerateOptions = MappingOptions & SynthesisOptions;

export interface GeneratorModel extends TrainableModel {
  /**
   * { name: the registered architecture name, config: exactly the config build() got }. Weights saved with this
   * architecture (the EMA generator's blob) are rebuilt from it by loadGenerator() in registry.ts.
   */
  readonly architecture: ModelArchitecture;
  /** Length of z (z ~ N(0, I)). */
  readonly latentDim: number;
  /** Output side in pixels: generate() returns [N, resolution, resolution, channels] (always full size). */
  readonly resolution: number;
  /** GAN_CHANNELS (5). */
  readonly channels: number;
  /**
   * z [N, latentDim] -> images [N, resolution, resolution, 5], about in [-1, 1]. Progressive generators at a
   * lower level upsample to full resolution (nearest), so callers always see full-size images.
   */
  generate(z: tf.Tensor2D, options?: GenerateOptions): tf.Tensor4D;

  // --- style-based generators (StyleGAN 1/2/3); all four or none -------------------------------------------
  /** Style inputs of the synthesis network (StyleGAN2 num_ws). */
  readonly numStyleLayers?: number;
  /** Length of w. */
  readonly wDim?: number;
  /** z [N, latentDim] -> ws [N, numStyleLayers, wDim] with truncation and style mixing applied. */
  mapLatents?(z: tf.Tensor2D, options?: MappingOptions): tf.Tensor3D;
  /** ws [N, numStyleLayers, wDim] -> images; generate(z, o) === synthesize(mapLatents(z, o), o). */
  synthesize?(ws: tf.Tensor3D, options?: SynthesisOptions): tf.Tensor4D;

  /**
   * Progressive growing / schedules: called by the training task before every phase (see GanTrainingProgress).
   * A newly built model is in its final state (fully grown, alpha 1) until this is first called, so a generator
   * built for sampling from saved weights produces final-resolution images without calling it.
   */
  setProgress?(progress: GanTrainingProgress): void;
}

export interface DiscriminatorModel extends TrainableModel {
  /** Input side in pixels (equal to the generator's resolution). */
  readonly resolution: number;
  /** GAN_CHANNELS (5). */
  readonly channels: number;
  /**
   * images [N, resolution, resolution, 5] -> logits/scores [N] (or [N, 1]; the losses flatten). Must work for any
   * N the task passes (minibatch-stddev layers use min(groupSize, N) and require N % group === 0, or fall back).
   */
  score(images: tf.Tensor4D, training?: boolean): tf.Tensor;
  /**
   * Optional: what D should see of a full-resolution real batch at the current progress. ProGAN: downsample to
   * the current level, blend with the previous level by alpha, upsample back (its official "process_reals"). The
   * task applies it to reals before score(); fakes come from generate(), already at the current level. Default:
   * identity.
   */
  prepareReals?(reals: tf.Tensor4D): tf.Tensor4D;
  /** As GeneratorModel.setProgress. */
  setProgress?(progress: GanTrainingProgress): void;
}

export interface GanPair {
  generator: GeneratorModel;
  discriminator: DiscriminatorModel;
}

/**
 * Loss families:
 * - 'nonsaturating-r1': D: softplus(D(G(z))) + softplus(−D(x)) plus R1 γ/2·E‖∇_x D(x)‖² (lazy, every
 *   lazyRegInterval steps, scaled by the interval); G: softplus(−D(G(z))). StyleGAN 1/2/3.
 * - 'wgan-gp': D: D(G(z)) − D(x) + λ·(‖∇D(x̂)‖ − 1)² on interpolates x̂ + ε_drift·D(x)²; G: −D(G(z)). ProGAN.
 */
export type GanLossKind = 'wgan-gp' | 'nonsaturating-r1';

/**
 * An architecture's training recipe: the 'gan' task's defaults (the task's config may override the scalar ones).
 * Optimizers are 'adamw' specs with weightDecay 0 (= Adam), e.g. { type: 'adamw', lr: 0.002, beta1: 0,
 * beta2: 0.99, epsilon: 1e-8, weightDecay: 0 }. For lazy regularisation give the plain (non-lazy) values: the
 * task scales lr and the betas by c = k/(k+1) itself (StyleGAN2's mb_ratio).
 */
export interface GanTrainingOptions {
  generatorOptimizer: OptimizerSpec;
  discriminatorOptimizer: OptimizerSpec;
  /** 'nonsaturating-r1': R1 weight γ (StyleGAN2 paper config: 10; 256² BraTS in the study: 8–10). */
  r1Gamma?: number;
  /** D regularisation interval k (StyleGAN2: 16); 1 or absent = R1 in every D step (StyleGAN1). */
  lazyRegInterval?: number;
  /** 'wgan-gp': gradient penalty weight λ (default 10), drift ε (default 0.001). */
  gpLambda?: number;
  driftEpsilon?: number;
  /** Path-length regularisation (StyleGAN2): needs mapLatents/synthesize. weight 2, interval 4, decay 0.01,
   * batchShrink 2 in the paper. Absent or weight 0 = off. */
  pathLength?: { weight: number; interval?: number; decay?: number; batchShrink?: number };
  /** Probability of style mixing per batch (StyleGAN: 0.9); needs numStyleLayers > 1. */
  styleMixingProbability?: number;
  /**
   * EMA of the generator's weights (G_ema): half-life in images (StyleGAN's ema_kimg · 1000; 10 000 for a
   * batch of 32), with the optional ramp-up (StyleGAN2's ema_rampup, e.g. 0.05: half-life ≤ rampup · images
   * seen). β per step = 0.5^(batchSize / halfLife). Or a fixed β per step. Default: { halfLifeImages: 10_000 }.
   */
  ema?: { halfLifeImages: number; rampup?: number } | { beta: number };
  /** Left-right mirror augmentation of reals (default true, as the paper's training). */
  mirror?: boolean;
}

/** A registered architecture. Config is the architecture's own structured-clone-able settings. */
export interface GanArchitecture<Config extends Record<string, unknown> = Record<string, unknown>> {
  name: GanArchitectureName;
  /**
   * Builds a generator and a discriminator whose initial weights depend on (config, seed) only (ParamFactory
   * with seeds derived from `seed`, e.g. ParamFactory.create(`${seed}/G`, 'stylegan2-G')): every training
   * worker calls it and must get bit-identical replicas. The generator's architecture must be
   * { name: this.name, config }.
   */
  build(config: Config, seed: number): GanPair;
  /** Optional: the generator alone (sampling, loading an EMA blob); default build(...).generator. */
  buildGenerator?(config: Config, seed: number): GeneratorModel;
  /**
   * Sizes: 'paper' = the study's settings (256², batch 32); 'cpu' = trainable on a 2-core CPU (64², small
   * widths); 'cpu32' = the cpu widths at 32² (the cpu32 slice preset: ~4x the steps per minute); 'tiny' = for
   * tests (32² or less, seconds per step at most).
   */
  profiles: Record<Exclude<GanProfileName, 'cpu32'>, Config> & { cpu32?: Config };
  loss: GanLossKind;
  options: GanTrainingOptions;
  /**
   * Changes to `options` for one profile, where that profile's budget needs another recipe than the official one
   * (made for 256² at batch 32 and days of GPU time). Applied when the task names the profile its config is; the
   * task config's own overrides still win.
   */
  profileOptions?: Partial<Record<GanProfileName, Partial<GanTrainingOptions>>>;
}
