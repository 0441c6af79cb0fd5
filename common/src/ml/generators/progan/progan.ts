// Progressive GAN (Karras, Aila, Laine, Lehtinen 2018: "Progressive Growing of GANs for Improved Quality,
// Stability, and Variation"), after the authors' official TensorFlow code (networks.py G_paper / D_paper), NHWC,
// 5 output channels instead of RGB.
//
// Generator: z → pixel norm → dense to 4×4×nf(1) (gain √2/4, per-channel bias) → LeakyReLU 0.2 → pixel norm →
// 3×3 conv → LeakyReLU → pixel norm; then per doubled resolution nearest ×2 upsampling and two 3×3 convs, each
// followed by LeakyReLU 0.2 and pixel norm; a linear 1×1 "toRGB" (to 5 channels) per level. All weights use the
// equalized learning rate (gain √2, toRGB gain 1).
// Discriminator, mirrored: a 1×1 "fromRGB" + LeakyReLU per level; per level two 3×3 convs + LeakyReLU and a 2×2
// box downsampling; at 4×4 minibatch stddev (group 4), a 3×3 conv, a dense layer to nf(0) and a linear output.
// Progressive growing with fade-in: at level L with alpha α, G outputs lerp(up2(toRGB_{L−1}(h_{L−1})),
// toRGB_L(h_L), α) and D reads lerp(fromRGB_{L−1}(down2(x)), block_L(fromRGB_L(x)), α) (see growth.ts for α).
// G always returns full-resolution images (a lower level is upsampled nearest), D always takes them (and box
// downsamples to the current level first, which undoes G's upsampling exactly).
import * as tf from '@tensorflow/tfjs';

import { ParamFactory, ZEROS, disposeVariables } from '../../layers/index.js';
import type { ModelArchitecture } from '../../model.js';
import {
  BLACK_FLOOR_SHARPNESS,
  GAN_CHANNELS,
  outputFloor,
  type BlackFloorSettings,
  createEqualizedConv2d,
  createEqualizedDense,
  downsampleAverage,
  equalizedConv2d,
  equalizedDense,
  minibatchStddev,
  pixelNorm,
  upsampleNearest,
  type DiscriminatorModel,
  type EqualizedConv2dLayer,
  type EqualizedDenseLayer,
  type GanTrainingProgress,
  type GenerateOptions,
  type GeneratorModel,
} from '../gan/index.js';
import { fullyGrown, growthAt, growthLevels, type GrowthSchedule, type GrowthState } from './growth.js';

export const PROGAN_NAME = 'progan';
export const PROGAN_DISCRIMINATOR_NAME = 'progan-discriminator';

/** The LeakyReLU slope of every ProGAN/StyleGAN 1 hidden layer. */
export const LRELU_SLOPE = 0.2;

/** Feature maps of a Karras-style network: nf(stage) = min(fmapBase / 2^(stage·fmapDecay), fmapMax). */
export interface FeatureMaps {
  fmapBase: number;
  fmapMax: number;
  /** 1 in every paper config. */
  fmapDecay: number;
}

/** nf(stage) of the official code: the block at resolution 2^(stage+1) has nf(stage) feature maps. */
export function featureMaps(fmaps: FeatureMaps, stage: number): number {
  return Math.max(1, Math.min(Math.floor(fmaps.fmapBase / 2 ** (stage * fmaps.fmapDecay)), fmaps.fmapMax));
}

/** Feature maps of the blocks at 4×4, 8×8, ... resolution (level l has nf(l + 1)). */
export function levelFeatureMaps(fmaps: FeatureMaps, resolution: number): number[] {
  return Array.from({ length: growthLevels(resolution) }, (_, level) => featureMaps(fmaps, level + 1));
}

export type ProGanConfig = {
  /** Output side (power of two ≥ 4). */
  resolution: number;
  /** Length of z. */
  latentDim: number;
  fmapBase: number;
  fmapMax: number;
  fmapDecay: number;
  /** Minibatch stddev group size (official: 4). */
  mbstdGroupSize: number;
  /** Progressive growing schedule (does not change the variables, only training). */
  growth: GrowthSchedule;
} & BlackFloorSettings;

/** The cpu profile's settings, shared by cpu (64²) and cpu32 (32²). */
const CPU_PROFILE = {
  resolution: 64,
  latentDim: 128,
  fmapBase: 512,
  fmapMax: 64,
  fmapDecay: 1,
  mbstdGroupSize: 4,
  growth: { kind: 'equal' },
  blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
} as const satisfies ProGanConfig;

export const PROGAN_PROFILES = {
  /**
   * The paper's network at the study's 256²: 512 feature maps up to 32×32, then halved per level (256 at 64², 128
   * at 128², 64 at 256²), 512-d latents, 800k images per fade and per stabilise phase.
   */
  paper: {
    resolution: 256,
    latentDim: 512,
    fmapBase: 8192,
    fmapMax: 512,
    fmapDecay: 1,
    mbstdGroupSize: 4,
    growth: { kind: 'images', stabiliseImages: 800_000, fadeImages: 800_000 },
    blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
  },
  /** 64² on a CPU: 64 feature maps up to 16×16, 32 at 32², 16 at 64²; equal phases over the run. */
  cpu: CPU_PROFILE,
  /**
   * 32² on a CPU (the cpu32 slice preset): the cpu widths without the 64² level (64 maps to 16², 32 at 32²), grown
   * by images (1,600 per phase: 200 steps of 8) and then trained at 32² until the run ends. A step at 32² costs ~15x
   * one at 4², so equal phases gave the top level a few minutes of a 15-minute run; measured at 15 minutes: 1,892
   * steps with 892 of them at 32² (its fade-in included), against 2,202 steps with 487 (histogram intersections
   * 0.88/0.69/0.77/0.78 against 0.62/0.55/0.65/0.65).
   */
  cpu32: {
    ...CPU_PROFILE,
    resolution: 32,
    growth: { kind: 'images', stabiliseImages: 1_600, fadeImages: 1_600 },
  },
  /** Tests: 32², 16 feature maps at 4² and 8², then 8, 8 ... */
  tiny: {
    resolution: 32,
    latentDim: 16,
    fmapBase: 64,
    fmapMax: 16,
    fmapDecay: 1,
    mbstdGroupSize: 4,
    growth: { kind: 'equal' },
    blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
  },
} as const satisfies Record<string, ProGanConfig>;

export function validateFeatureMaps(fmaps: FeatureMaps, what: string): void {
  if (!(fmaps.fmapBase >= 1 && fmaps.fmapMax >= 1 && fmaps.fmapDecay >= 0)) {
    throw new Error(`${what}: bad feature maps ${JSON.stringify(fmaps)}`);
  }
}

function validate(config: ProGanConfig): void {
  growthLevels(config.resolution);
  validateFeatureMaps(config, 'ProGAN');
  if (!Number.isInteger(config.latentDim) || config.latentDim < 1) {
    throw new Error(`ProGAN: latentDim must be a positive integer, got ${config.latentDim}`);
  }
  if (!Number.isInteger(config.mbstdGroupSize) || config.mbstdGroupSize < 1) {
    throw new Error(`ProGAN: mbstdGroupSize must be a positive integer, got ${config.mbstdGroupSize}`);
  }
}

const conv3x3 = (params: ParamFactory, inChannels: number, outChannels: number): EqualizedConv2dLayer =>
  createEqualizedConv2d(params, { inChannels, outChannels, kernelSize: 3, gain: Math.SQRT2 });

const act = (x: tf.Tensor4D): tf.Tensor4D => tf.leakyRelu(x, LRELU_SLOPE);

// -----------------------------------------------------------------------------------------------------------
// Generator

export interface ProGanGenerator extends GeneratorModel {
  /** Number of levels (4×4 … resolution). */
  readonly levels: number;
  /** The current level and alpha (fully grown until setProgress/setGrowth is called). */
  readonly growth: GrowthState;
  /** Sets the level and alpha directly (tests, custom schedules). */
  setGrowth(state: GrowthState): void;
  setProgress(progress: GanTrainingProgress): void;
}

interface GeneratorLevel {
  /** level 0: the latent's dense layer (no bias; `bias` is per channel after the reshape) and one conv */
  dense?: EqualizedDenseLayer;
  bias?: tf.Variable;
  /** levels ≥ 1: the first conv after the upsampling */
  conv0?: EqualizedConv2dLayer;
  conv1: EqualizedConv2dLayer;
  toRgb: EqualizedConv2dLayer;
}

/** Level names: '4x4', '8x8', ... */
export function levelName(level: number): string {
  const side = 4 * 2 ** level;
  return `${side}x${side}`;
}

export function checkGrowth(state: GrowthState, levels: number): GrowthState {
  const { level, alpha } = state;
  if (!Number.isInteger(level) || level < 0 || level >= levels || !(alpha >= 0 && alpha <= 1)) {
    throw new Error(`progressive growing: bad state ${JSON.stringify(state)} for ${levels} levels`);
  }
  return { level, alpha: level === 0 ? 1 : alpha };
}

export function buildProGanGenerator(config: ProGanConfig, seed: number): ProGanGenerator {
  validate(config);
  const params = ParamFactory.create(`${seed}/G`, 'progan-G');
  const levels = growthLevels(config.resolution);
  const nf = levelFeatureMaps(config, config.resolution);

  const blocks: GeneratorLevel[] = nf.map((channels, level) => {
    const scope = params.scope(levelName(level));
    const toRgb = createEqualizedConv2d(scope.scope('torgb'), {
      inChannels: channels,
      outChannels: GAN_CHANNELS,
      kernelSize: 1,
      gain: 1,
    });
    if (level === 0) {
      const denseScope = scope.scope('dense');
      return {
        dense: createEqualizedDense(denseScope, {
          inFeatures: config.latentDim,
          outFeatures: 16 * channels,
          gain: Math.SQRT2 / 4,
          bias: false,
        }),
        bias: denseScope.variable('bias', [channels], ZEROS),
        conv1: conv3x3(scope.scope('conv'), channels, channels),
        toRgb,
      };
    }
    return {
      conv0: conv3x3(scope.scope('conv0'), nf[level - 1]!, channels),
      conv1: conv3x3(scope.scope('conv1'), channels, channels),
      toRgb,
    };
  });

  let growth = fullyGrown(levels);

  /** Features of `level` from those of the level below (or from the normalised latents at level 0). */
  const runBlock = (x: tf.Tensor, level: number): tf.Tensor4D => {
    const block = blocks[level]!;
    if (level === 0) {
      const flat = equalizedDense(x as tf.Tensor2D, block.dense!);
      const h = tf.reshape(flat, [x.shape[0]!, 4, 4, nf[0]!]) as tf.Tensor4D;
      const y = pixelNorm(act(tf.add(h, block.bias!)));
      return pixelNorm(act(equalizedConv2d(y, block.conv1)));
    }
    const up = upsampleNearest(x as tf.Tensor4D, 2);
    const y = pixelNorm(act(equalizedConv2d(up, block.conv0!)));
    return pixelNorm(act(equalizedConv2d(y, block.conv1)));
  };

  const generate = (z: tf.Tensor2D, options: GenerateOptions = {}): tf.Tensor4D =>
    tf.tidy(() => {
      if (z.rank !== 2 || z.shape[1] !== config.latentDim) {
        throw new Error(`ProGAN: z must be [N, ${config.latentDim}], got [${z.shape.join(', ')}]`);
      }
      const { level, alpha } = growth;
      // Truncation: pixel norm makes G blind to the length of z, so ψ scales the normalised latent instead,
      // towards its mean 0 (ψ = 0: one image for every z; ψ = 1: untouched).
      const psi = options.truncationPsi ?? 1;
      let x: tf.Tensor = pixelNorm(z);
      if (psi !== 1) x = tf.mul(x, psi);
      // At alpha 0 the newest block does not contribute: stop below it.
      const top = alpha === 0 ? level - 1 : level;
      let below: tf.Tensor4D | undefined;
      for (let l = 0; l <= top; l++) {
        if (l === level) below = x as tf.Tensor4D;
        x = runBlock(x, l);
      }
      let images: tf.Tensor4D;
      if (alpha === 0) {
        images = upsampleNearest(equalizedConv2d(x as tf.Tensor4D, blocks[level - 1]!.toRgb), 2);
      } else {
        images = equalizedConv2d(x as tf.Tensor4D, blocks[level]!.toRgb);
        if (alpha < 1) {
          const previous = upsampleNearest(equalizedConv2d(below!, blocks[level - 1]!.toRgb), 2);
          images = tf.add(previous, tf.mul(tf.sub(images, previous), alpha));
        }
      }
      return outputFloor(upsampleNearest(images, 2 ** (levels - 1 - level)), config);
    });

  const variables = params.variables;
  const architecture: ModelArchitecture = { name: PROGAN_NAME, config };
  return {
    architecture,
    variables,
    latentDim: config.latentDim,
    resolution: config.resolution,
    channels: GAN_CHANNELS,
    levels,
    get growth() {
      return { ...growth };
    },
    setGrowth: (state) => {
      growth = checkGrowth(state, levels);
    },
    setProgress: (progress) => {
      growth = checkGrowth(growthAt(config.growth, levels, progress), levels);
    },
    generate,
    dispose: () => disposeVariables(variables),
  };
}

// -----------------------------------------------------------------------------------------------------------
// Discriminator (shared with StyleGAN 1, whose paper uses ProGAN's discriminator)

export type ProGanDiscriminatorConfig = FeatureMaps & {
  resolution: number;
  mbstdGroupSize: number;
  /** Default true. false: a fixed-resolution D (StyleGAN 1) with only the top level's fromRGB. */
  progressive?: boolean;
};

export interface ProGanDiscriminator extends DiscriminatorModel {
  readonly levels: number;
  readonly growth: GrowthState;
  setGrowth(state: GrowthState): void;
  prepareReals(reals: tf.Tensor4D): tf.Tensor4D;
  score(images: tf.Tensor4D, training?: boolean): tf.Tensor1D;
  /** ProGAN's own discriminator follows its growth schedule; StyleGAN 1's stays fully grown (no setProgress). */
  setProgress?(progress: GanTrainingProgress): void;
}

interface DiscriminatorLevel {
  /** every level when progressive, else the top one only */
  fromRgb?: EqualizedConv2dLayer;
  /** levels ≥ 1: conv0 (nf(l+1) → nf(l+1)), conv1 (→ nf(l)), then 2×2 downsampling */
  conv0?: EqualizedConv2dLayer;
  conv1: EqualizedConv2dLayer;
  /** level 0: dense 4·4·nf(1) → nf(0) and the linear output */
  dense?: EqualizedDenseLayer;
  out?: EqualizedDenseLayer;
}

/**
 * ProGAN's discriminator. `architecture` names it in weights blobs; `params` is the root factory (variables are
 * named '<res>x<res>/fromrgb/kernel', '8x8/conv0/kernel', '4x4/dense/kernel', ...).
 */
export function buildProGanDiscriminatorFrom(
  config: ProGanDiscriminatorConfig,
  params: ParamFactory,
  architecture: ModelArchitecture,
): ProGanDiscriminator {
  validateFeatureMaps(config, 'ProGAN discriminator');
  const levels = growthLevels(config.resolution);
  const nf = levelFeatureMaps(config, config.resolution);
  const nf0 = featureMaps(config, 0);
  const progressive = config.progressive ?? true;

  const blocks: DiscriminatorLevel[] = nf.map((channels, level) => {
    const scope = params.scope(levelName(level));
    const fromRgb =
      progressive || level === levels - 1
        ? createEqualizedConv2d(scope.scope('fromrgb'), {
            inChannels: GAN_CHANNELS,
            outChannels: channels,
            kernelSize: 1,
            gain: Math.SQRT2,
          })
        : undefined;
    if (level === 0) {
      return {
        fromRgb,
        conv1: conv3x3(scope.scope('conv'), channels + 1, channels),
        dense: createEqualizedDense(scope.scope('dense'), {
          inFeatures: 16 * channels,
          outFeatures: nf0,
          gain: Math.SQRT2,
        }),
        out: createEqualizedDense(scope.scope('out'), { inFeatures: nf0, outFeatures: 1, gain: 1 }),
      };
    }
    return {
      fromRgb,
      conv0: conv3x3(scope.scope('conv0'), channels, channels),
      conv1: conv3x3(scope.scope('conv1'), channels, nf[level - 1]!),
    };
  });

  let growth = fullyGrown(levels);

  const fromRgb = (images: tf.Tensor4D, level: number): tf.Tensor4D =>
    act(equalizedConv2d(images, blocks[level]!.fromRgb!));

  /** Level `level`'s features → those of the level below (at level 0: the scores [N]). */
  const runBlock = (x: tf.Tensor4D, level: number): tf.Tensor => {
    const block = blocks[level]!;
    if (level === 0) {
      const y = act(equalizedConv2d(minibatchStddev(x, config.mbstdGroupSize, 1), block.conv1));
      const flat = tf.reshape(y, [y.shape[0], -1]) as tf.Tensor2D;
      const hidden = tf.leakyRelu(equalizedDense(flat, block.dense!), LRELU_SLOPE);
      return tf.reshape(equalizedDense(hidden, block.out!), [-1]);
    }
    const y = act(equalizedConv2d(act(equalizedConv2d(x, block.conv0!)), block.conv1));
    return downsampleAverage(y, 2);
  };

  const checkInput = (images: tf.Tensor4D): void => {
    const [, h, w, c] = images.shape;
    if (images.rank !== 4 || h !== config.resolution || w !== config.resolution || c !== GAN_CHANNELS) {
      throw new Error(
        `ProGAN discriminator: images must be [N, ${config.resolution}, ${config.resolution}, ${GAN_CHANNELS}], ` +
          `got [${images.shape.join(', ')}]`,
      );
    }
  };

  const score = (images: tf.Tensor4D): tf.Tensor1D =>
    tf.tidy(() => {
      checkInput(images);
      const { level, alpha } = growth;
      const current = downsampleAverage(images, 2 ** (levels - 1 - level));
      let x: tf.Tensor4D;
      if (alpha === 0) {
        x = fromRgb(downsampleAverage(current, 2), level - 1);
      } else {
        x = runBlock(fromRgb(current, level), level) as tf.Tensor4D;
        if (level > 0 && alpha < 1) {
          const previous = fromRgb(downsampleAverage(current, 2), level - 1);
          x = tf.add(previous, tf.mul(tf.sub(x, previous), alpha));
        }
      }
      if (level === 0) return x as unknown as tf.Tensor1D;
      let y: tf.Tensor = x;
      for (let l = level - 1; l >= 0; l--) y = runBlock(y as tf.Tensor4D, l);
      return y as tf.Tensor1D;
    });

  /** Official process_reals: reals at the current level, faded like G's output, upsampled back to full size. */
  const prepareReals = (reals: tf.Tensor4D): tf.Tensor4D =>
    tf.tidy(() => {
      checkInput(reals);
      const { level, alpha } = growth;
      let x = downsampleAverage(reals, 2 ** (levels - 1 - level));
      if (level > 0 && alpha < 1) {
        const previous = upsampleNearest(downsampleAverage(x, 2), 2);
        x = alpha === 0 ? previous : tf.add(previous, tf.mul(tf.sub(x, previous), alpha));
      }
      return upsampleNearest(x, 2 ** (levels - 1 - level));
    });

  const variables = params.variables;
  return {
    architecture,
    variables,
    resolution: config.resolution,
    channels: GAN_CHANNELS,
    levels,
    get growth() {
      return { ...growth };
    },
    setGrowth: (state) => {
      const checked = checkGrowth(state, levels);
      if (!progressive && (checked.level !== levels - 1 || checked.alpha !== 1)) {
        throw new Error('ProGAN discriminator: built without progressive growing (fixed resolution)');
      }
      growth = checked;
    },
    score,
    prepareReals,
    dispose: () => disposeVariables(variables),
  };
}

export function buildProGanDiscriminator(
  config: ProGanConfig,
  seed: number,
): ProGanDiscriminator & Required<Pick<ProGanDiscriminator, 'setProgress'>> {
  validate(config);
  const params = ParamFactory.create(`${seed}/D`, 'progan-D');
  const discriminator = buildProGanDiscriminatorFrom(config, params, {
    name: PROGAN_DISCRIMINATOR_NAME,
    config,
  });
  const levels = discriminator.levels;
  return Object.assign(discriminator, {
    setProgress: (progress: GanTrainingProgress) =>
      discriminator.setGrowth(growthAt(config.growth, levels, progress)),
  });
}
