// StyleGAN 1 (Karras, Laine, Aila 2019: "A Style-Based Generator Architecture for Generative Adversarial
// Networks"), after the authors' official code (networks_stylegan.py G_mapping / G_synthesis), NHWC, 5 channels.
//
// Mapping: z → pixel norm → mappingLayers × (equalized dense, lr multiplier 0.01, LeakyReLU 0.2) → w, broadcast
// to one w per synthesis layer (two per resolution).
// Synthesis, at a fixed resolution (no progressive growing): a learned constant 4×4 input; per layer
// [×2 upsampling → 3×3 conv (→ [1,2,1]² blur)] or [3×3 conv] or the constant, then the layer epilogue: noise
// (one N(0,1) map per sample and layer, times a learned per-channel strength, zero at init) → bias →
// LeakyReLU 0.2 → AdaIN (instance norm, then x·(ys + 1) + yb with (ys, yb) = an equalized affine of that layer's
// w); a linear 1×1 "toRGB" to 5 channels at the end.
// Style mixing (training): layers from the crossover on take w from a second latent. Truncation (sampling):
// w' = w̄ + ψ(w − w̄) on layers below the cutoff, with w̄ the running average of w kept by the mapping network
// during training (β = 0.995, updated by every training-mode mapping call, as the official dlatent_avg).
// Discriminator: ProGAN's (the paper keeps it), fully grown.
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
  equalizedConv2d,
  equalizedDense,
  pixelNorm,
  upsampleNearest,
  type EqualizedConv2dLayer,
  type EqualizedDenseLayer,
  type GenerateOptions,
  type GeneratorModel,
  type MappingOptions,
  type SynthesisOptions,
} from '../gan/index.js';
import {
  LRELU_SLOPE,
  buildProGanDiscriminatorFrom,
  growthLevels,
  levelFeatureMaps,
  levelName,
  validateFeatureMaps,
  type ProGanDiscriminator,
} from '../progan/index.js';

export const STYLEGAN1_NAME = 'stylegan1';
export const STYLEGAN1_DISCRIMINATOR_NAME = 'stylegan1-discriminator';

/**
 * - 'bilinear': tf.image.resizeBilinear ×2 (half-pixel centres, i.e. the [1,3,3,1]/4 kernel) before each
 *   upsampling conv;
 * - 'nearest-blur': the official code: nearest ×2, conv, then a [1,2,1]⊗[1,2,1]/16 blur (the paper's
 *   "bilinear upsampling" is this low-pass filter).
 */
export type StyleGan1Upsampling = 'bilinear' | 'nearest-blur';

export type StyleGan1Config = {
  /** Output side (power of two ≥ 4); synthesis layers = 2 per resolution from 4×4. */
  resolution: number;
  /** Length of z. */
  latentDim: number;
  /** Length of w. */
  wDim: number;
  /** Dense layers of the mapping network (paper: 8) and their width (paper: 512). */
  mappingLayers: number;
  mappingFeatures: number;
  /** Learning-rate multiplier of the mapping network (paper: 0.01). */
  mappingLrMultiplier: number;
  fmapBase: number;
  fmapMax: number;
  fmapDecay: number;
  upsampling: StyleGan1Upsampling;
  /** Per-layer noise inputs (paper: on). */
  noise: boolean;
  /**
   * Noise inputs only in layers of at most this side (absent: every layer, as the paper and configs made before
   * it). See STYLEGAN1_PROFILES.cpu32.
   */
  noiseMaxResolution?: number;
  /** β of the running average of w (paper: 0.995). */
  wAvgBeta: number;
  /** Discriminator's minibatch stddev group size (paper: 4). */
  mbstdGroupSize: number;
} & BlackFloorSettings;

/** The cpu profile's settings, shared by cpu (64²) and cpu32 (32²). */
const CPU_PROFILE = {
  resolution: 64,
  latentDim: 128,
  wDim: 128,
  mappingLayers: 4,
  mappingFeatures: 128,
  mappingLrMultiplier: 0.01,
  fmapBase: 512,
  fmapMax: 64,
  fmapDecay: 1,
  upsampling: 'bilinear',
  noise: true,
  wAvgBeta: 0.995,
  mbstdGroupSize: 4,
  blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
} as const satisfies StyleGan1Config;

export const STYLEGAN1_PROFILES = {
  /** The paper's networks (official defaults) at the study's 256²: 14 style layers, 512 maps halved above 32². */
  paper: {
    resolution: 256,
    latentDim: 512,
    wDim: 512,
    mappingLayers: 8,
    mappingFeatures: 512,
    mappingLrMultiplier: 0.01,
    fmapBase: 8192,
    fmapMax: 512,
    fmapDecay: 1,
    upsampling: 'nearest-blur',
    noise: true,
    wAvgBeta: 0.995,
    mbstdGroupSize: 4,
    blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
  },
  /** 64² on a CPU: the widths of ProGAN's cpu profile, a 4-layer 128-wide mapping network. */
  cpu: CPU_PROFILE,
  /**
   * 32² on a CPU (the cpu32 slice preset): the cpu profile without its 64² layers, and noise inputs up to 16² only.
   * With noise in the 32² layers too, the last layer's strengths grew to ~0.46 (0.01–0.06 elsewhere) in 15 minutes
   * and every sample carried a per-pixel speckle — in the annotation too: NCR specks in 87 % of slices (real: 13 %),
   * T2 intersection 0.70. Without it (2,703 steps, both cores): coherent tumours, T2 0.72, WT area ratio 1.34, KS 0.18.
   * At 32² a pixel is ~7.5 mm of brain; the 4²–16² layers keep their noise.
   */
  cpu32: { ...CPU_PROFILE, resolution: 32, noiseMaxResolution: 16 },
  /** Tests: 32², 8 style layers. */
  tiny: {
    resolution: 32,
    latentDim: 16,
    wDim: 16,
    mappingLayers: 2,
    mappingFeatures: 16,
    mappingLrMultiplier: 0.01,
    fmapBase: 64,
    fmapMax: 16,
    fmapDecay: 1,
    upsampling: 'nearest-blur',
    noise: true,
    wAvgBeta: 0.995,
    mbstdGroupSize: 4,
    blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
  },
} as const satisfies Record<string, StyleGan1Config>;

function validate(config: StyleGan1Config): void {
  growthLevels(config.resolution);
  validateFeatureMaps(config, 'StyleGAN 1');
  for (const key of ['latentDim', 'wDim', 'mappingLayers', 'mappingFeatures', 'mbstdGroupSize'] as const) {
    if (!Number.isInteger(config[key]) || config[key] < 1) {
      throw new Error(`StyleGAN 1: ${key} must be a positive integer, got ${config[key]}`);
    }
  }
  if (!(config.mappingLrMultiplier > 0)) throw new Error('StyleGAN 1: mappingLrMultiplier must be > 0');
  const cap = config.noiseMaxResolution;
  if (cap !== undefined && !(Number.isInteger(Math.log2(cap)) && cap >= 4)) {
    throw new Error(`StyleGAN 1: noiseMaxResolution must be a power of 2 ≥ 4, got ${cap}`);
  }
  if (!(config.wAvgBeta >= 0 && config.wAvgBeta < 1))
    throw new Error('StyleGAN 1: wAvgBeta must be in [0, 1)');
  if (config.upsampling !== 'bilinear' && config.upsampling !== 'nearest-blur') {
    throw new Error(`StyleGAN 1: unknown upsampling ${JSON.stringify(config.upsampling)}`);
  }
}

/** Number of synthesis layers (= style inputs): two per resolution from 4×4. */
export function styleLayerCount(resolution: number): number {
  return 2 * growthLevels(resolution);
}

// -----------------------------------------------------------------------------------------------------------
// Building blocks

/**
 * AdaIN: per sample and channel, normalise x over H, W (instance norm, ε as the official 1e-8), then scale and
 * shift by the style: x̂·scale + bias, scale and bias [N, C].
 */
export function adaIn(x: tf.Tensor4D, scale: tf.Tensor2D, bias: tf.Tensor2D, epsilon = 1e-8): tf.Tensor4D {
  const [n, , , c] = x.shape;
  const { mean, variance } = tf.moments(x, [1, 2], true);
  const normalised = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon)));
  return tf.add(tf.mul(normalised, tf.reshape(scale, [n, 1, 1, c])), tf.reshape(bias, [n, 1, 1, c]));
}

/** [1,2,1]⊗[1,2,1]/16 low-pass filter per channel ('same' padding with zeros, as the official blur2d). */
export function blur(x: tf.Tensor4D): tf.Tensor4D {
  const channels = x.shape[3];
  const taps = [1, 2, 1, 2, 4, 2, 1, 2, 1].map((v) => v / 16);
  const filter = tf.tile(tf.reshape(tf.tensor1d(taps), [3, 3, 1, 1]), [1, 1, channels, 1]) as tf.Tensor4D;
  return tf.depthwiseConv2d(x, filter, 1, 'same');
}

/** Seed of layer `layer`'s noise for a given noise seed (undefined: the constant noise of sampling). */
export function layerNoiseSeed(noiseSeed: number | undefined, layer: number): number {
  // Distinct for distinct (seed, layer) while layers < 131; the constant noise has its own stream.
  return noiseSeed === undefined ? 0x5eed0000 + layer : noiseSeed * 131 + layer + 1;
}

// -----------------------------------------------------------------------------------------------------------
// Generator

export interface SynthesisLayer {
  /** Resolution level (0 = 4×4). */
  level: number;
  /** the first layer's input (its only conv-free layer) */
  constant?: tf.Variable;
  /** 3×3 conv without bias (the epilogue adds it), upsampling first on the first layer of a level ≥ 1 */
  conv?: EqualizedConv2dLayer;
  upsample: boolean;
  bias: tf.Variable;
  /** per-channel noise strength [C] (zeros at init) */
  noiseStrength?: tf.Variable;
  /** w → (ys, yb) [2C], gain 1 */
  style: EqualizedDenseLayer;
  channels: number;
}

export interface SynthesisTrace {
  images: tf.Tensor4D;
  /** Each synthesis layer's output (after AdaIN), in order. */
  activations: tf.Tensor4D[];
}

export interface StyleGan1Generator extends GeneratorModel {
  readonly numStyleLayers: number;
  readonly wDim: number;
  /** The running average of w (a non-trainable variable, also in `variables` as 'mapping/w_avg'). */
  readonly wAvg: tf.Variable;
  /** The mapping network alone: z [N, latentDim] → w [N, wDim]; in training mode it updates wAvg. */
  mapping(z: tf.Tensor2D, training?: boolean): tf.Tensor2D;
  mapLatents(z: tf.Tensor2D, options?: MappingOptions): tf.Tensor3D;
  synthesize(ws: tf.Tensor3D, options?: SynthesisOptions): tf.Tensor4D;
  /** synthesize() with every layer's activations (tests, inspection). */
  synthesizeTrace(ws: tf.Tensor3D, options?: SynthesisOptions): SynthesisTrace;
}

export function buildStyleGan1Generator(config: StyleGan1Config, seed: number): StyleGan1Generator {
  validate(config);
  const params = ParamFactory.create(`${seed}/G`, 'stylegan1-G');
  const levels = growthLevels(config.resolution);
  const nf = levelFeatureMaps(config, config.resolution);
  const numStyleLayers = 2 * levels;

  const mappingScope = params.scope('mapping');
  const mappingLayers: EqualizedDenseLayer[] = Array.from({ length: config.mappingLayers }, (_, i) =>
    createEqualizedDense(mappingScope.scope(`dense${i}`), {
      inFeatures: i === 0 ? config.latentDim : config.mappingFeatures,
      outFeatures: i === config.mappingLayers - 1 ? config.wDim : config.mappingFeatures,
      gain: Math.SQRT2,
      lrMultiplier: config.mappingLrMultiplier,
    }),
  );
  // Not trained (no gradient ever reaches it); kept in `variables` so weights blobs and FedAvg carry it.
  const wAvg = tf.variable(tf.zeros([config.wDim]), false, `stylegan1-G-${seed}-w_avg-${uniqueId()}`);
  params.variables['mapping/w_avg'] = wAvg;

  const synthesisScope = params.scope('synthesis');
  const layers: SynthesisLayer[] = Array.from({ length: numStyleLayers }, (_, index) => {
    const level = Math.floor(index / 2);
    const channels = nf[level]!;
    const levelScope = synthesisScope.scope(levelName(level));
    const scope = levelScope.scope(`layer${index % 2}`);
    const first = index === 0;
    const inChannels = index % 2 === 1 ? channels : level === 0 ? channels : nf[level - 1]!;
    return {
      level,
      constant: first ? levelScope.variable('const', [1, 4, 4, channels], { kind: 'ones' }) : undefined,
      conv: first
        ? undefined
        : createEqualizedConv2d(scope.scope('conv'), {
            inChannels,
            outChannels: channels,
            kernelSize: 3,
            gain: Math.SQRT2,
            bias: false,
          }),
      upsample: !first && index % 2 === 0,
      bias: scope.variable('bias', [channels], ZEROS),
      noiseStrength:
        config.noise && 4 * 2 ** level <= (config.noiseMaxResolution ?? Infinity)
          ? scope.variable('noise_strength', [channels], ZEROS)
          : undefined,
      style: createEqualizedDense(scope.scope('style'), {
        inFeatures: config.wDim,
        outFeatures: 2 * channels,
      }),
      channels,
    };
  });
  const toRgb = createEqualizedConv2d(synthesisScope.scope('torgb'), {
    inChannels: nf[levels - 1]!,
    outChannels: GAN_CHANNELS,
    kernelSize: 1,
    gain: 1,
  });

  const mapping = (z: tf.Tensor2D, training = false): tf.Tensor2D =>
    tf.tidy(() => {
      if (z.rank !== 2 || z.shape[1] !== config.latentDim) {
        throw new Error(`StyleGAN 1: z must be [N, ${config.latentDim}], got [${z.shape.join(', ')}]`);
      }
      let w: tf.Tensor2D = pixelNorm(z);
      for (const layer of mappingLayers) w = tf.leakyRelu(equalizedDense(w, layer), LRELU_SLOPE);
      if (training) {
        // dlatent_avg ← lerp(batch mean, dlatent_avg, β), outside any gradient (the official update op).
        const beta = config.wAvgBeta;
        wAvg.assign(tf.add(tf.mul(tf.mean(w, 0), 1 - beta), tf.mul(wAvg, beta)));
      }
      return w;
    });

  const broadcastLayers = (w: tf.Tensor2D, count: number): tf.Tensor3D =>
    tf.mul(tf.reshape(w, [w.shape[0], 1, config.wDim]), tf.ones([1, count, 1]));

  const mapLatents = (z: tf.Tensor2D, options: MappingOptions = {}): tf.Tensor3D =>
    tf.tidy(() => {
      const training = options.training ?? false;
      const w = mapping(z, training);
      let ws: tf.Tensor3D;
      const mixing = options.styleMixing;
      if (mixing && mixing.crossover < numStyleLayers) {
        const { latents, crossover } = mixing;
        if (!Number.isInteger(crossover) || crossover < 0) {
          throw new Error(`StyleGAN 1: bad style-mixing crossover ${crossover}`);
        }
        if (latents.shape[0] !== z.shape[0]) throw new Error('StyleGAN 1: style-mixing latents differ in N');
        // The running average follows the first latents only (the official dlatents[:, 0]).
        const w2 = mapping(latents, false);
        ws =
          crossover === 0
            ? broadcastLayers(w2, numStyleLayers)
            : tf.concat([broadcastLayers(w, crossover), broadcastLayers(w2, numStyleLayers - crossover)], 1);
      } else {
        ws = broadcastLayers(w, numStyleLayers);
      }
      const psi = options.truncationPsi ?? 1;
      if (psi !== 1) {
        const cutoff = Math.min(options.truncationCutoff ?? numStyleLayers, numStyleLayers);
        const average = options.averageLatent ?? wAvg;
        const coefficients = Array.from({ length: numStyleLayers }, (_, i) => (i < cutoff ? psi : 1));
        const coefficient = tf.tensor3d(coefficients, [1, numStyleLayers, 1]);
        ws = tf.add(average, tf.mul(tf.sub(ws, average), coefficient));
      }
      return ws;
    });

  const upsample = (x: tf.Tensor4D): tf.Tensor4D =>
    config.upsampling === 'bilinear'
      ? tf.image.resizeBilinear(x, [2 * x.shape[1], 2 * x.shape[2]], false, true)
      : upsampleNearest(x, 2);

  const synthesizeTrace = (ws: tf.Tensor3D, options: SynthesisOptions = {}): SynthesisTrace => {
    if (ws.rank !== 3 || ws.shape[1] !== numStyleLayers || ws.shape[2] !== config.wDim) {
      throw new Error(
        `StyleGAN 1: ws must be [N, ${numStyleLayers}, ${config.wDim}], got [${ws.shape.join(', ')}]`,
      );
    }
    const n = ws.shape[0];
    const activations: tf.Tensor4D[] = [];
    // layers[0] starts from the constant, so x is set before any conv reads it.
    let x: tf.Tensor4D | undefined;
    for (const [index, layer] of layers.entries()) {
      let h: tf.Tensor4D;
      if (layer.constant) {
        h = tf.mul(layer.constant, tf.ones([n, 1, 1, 1]));
      } else {
        h = equalizedConv2d(layer.upsample ? upsample(x!) : x!, layer.conv!);
        if (layer.upsample && config.upsampling === 'nearest-blur') h = blur(h);
      }
      if (layer.noiseStrength) {
        const side = h.shape[1];
        const noise = tf.randomNormal(
          [n, side, side, 1],
          0,
          1,
          'float32',
          layerNoiseSeed(options.noiseSeed, index),
        );
        h = tf.add(h, tf.mul(noise, layer.noiseStrength));
      }
      h = tf.leakyRelu(tf.add(h, layer.bias) as tf.Tensor4D, LRELU_SLOPE);
      const w = tf.reshape(tf.slice(ws, [0, index, 0], [n, 1, config.wDim]), [n, config.wDim]) as tf.Tensor2D;
      const [scale, bias] = tf.split(equalizedDense(w, layer.style), 2, 1) as [tf.Tensor2D, tf.Tensor2D];
      x = adaIn(h, tf.add(scale, 1), bias);
      activations.push(x);
    }
    return { images: outputFloor(equalizedConv2d(x!, toRgb), config), activations };
  };

  const synthesize = (ws: tf.Tensor3D, options: SynthesisOptions = {}): tf.Tensor4D =>
    tf.tidy(() => synthesizeTrace(ws, options).images);

  const generate = (z: tf.Tensor2D, options: GenerateOptions = {}): tf.Tensor4D =>
    tf.tidy(() => synthesizeTrace(mapLatents(z, options), options).images);

  const variables = params.variables;
  const architecture: ModelArchitecture = { name: STYLEGAN1_NAME, config };
  return {
    architecture,
    variables,
    latentDim: config.latentDim,
    resolution: config.resolution,
    channels: GAN_CHANNELS,
    numStyleLayers,
    wDim: config.wDim,
    wAvg,
    mapping,
    mapLatents,
    synthesize,
    synthesizeTrace: (ws, options) => {
      // Keep the trace's tensors past the tidy that makes them.
      const trace = tf.tidy(() => {
        const { images, activations } = synthesizeTrace(ws, options);
        return [images, ...activations];
      });
      return { images: trace[0]!, activations: trace.slice(1) };
    },
    generate,
    dispose: () => disposeVariables(variables),
  };
}

let nextId = 0;
function uniqueId(): number {
  return nextId++;
}

// -----------------------------------------------------------------------------------------------------------
// Discriminator

export function buildStyleGan1Discriminator(config: StyleGan1Config, seed: number): ProGanDiscriminator {
  validate(config);
  const params = ParamFactory.create(`${seed}/D`, 'stylegan1-D');
  const { resolution, fmapBase, fmapMax, fmapDecay, mbstdGroupSize } = config;
  return buildProGanDiscriminatorFrom(
    { resolution, fmapBase, fmapMax, fmapDecay, mbstdGroupSize, progressive: false },
    params,
    { name: STYLEGAN1_DISCRIMINATOR_NAME, config },
  );
}
