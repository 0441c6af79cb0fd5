// StyleGAN 2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), config F minus the
// large-network variants: mapping network (8 layers, lr ×0.01, tracked w̄), skip generator with modulated and
// demodulated convolutions and noise inputs, residual discriminator with minibatch stddev. Trained with the
// non-saturating loss, lazy R1 (every 16 steps) and lazy path-length regularisation (every 4), style mixing 0.9.
import * as tf from '@tensorflow/tfjs';

import { ParamFactory, disposeVariables } from '../../layers/index.js';
import type { ModelArchitecture } from '../../model.js';
import {
  GAN_CHANNELS,
  type DiscriminatorModel,
  type GanPair,
  type GenerateOptions,
  type GeneratorModel,
  type MappingOptions,
  type SynthesisOptions,
} from '../gan/types.js';
import { BLACK_FLOOR_SHARPNESS, outputFloor, type BlackFloorSettings } from '../gan/layers.js';
import {
  createResidualDiscriminator,
  discriminate,
  type ResidualDiscriminator,
  type ResidualDiscriminatorSpec,
} from './discriminator.js';
import { createMapping, mapLatents, type MappingNetwork } from './mapping.js';
import type { ModConvImpl } from './modulated-conv.js';
import { createSynthesis, synthesize, type SynthesisNetwork, type SynthesisRunOptions } from './synthesis.js';

export type StyleGan2Config = {
  /** Output side (power of two). */
  resolution: number;
  /** Image channels (GAN_CHANNELS = 5). */
  imageChannels: number;
  zDim: number;
  wDim: number;
  mappingLayers: number;
  mappingLrMultiplier: number;
  /** EMA decay of the tracked w̄ (0.998). */
  wAvgBeta: number;
  /** Feature maps at resolution r: min(channelBase / r, channelMax), in G and D. */
  channelBase: number;
  channelMax: number;
  mbstdGroupSize: number;
  mbstdChannels: number;
} & BlackFloorSettings;

/** The cpu profile's settings, shared by cpu (64²) and cpu32 (32²). */
const CPU_PROFILE = {
  resolution: 64,
  imageChannels: GAN_CHANNELS,
  zDim: 128,
  wDim: 128,
  mappingLayers: 4,
  mappingLrMultiplier: 0.01,
  wAvgBeta: 0.998,
  channelBase: 1024,
  channelMax: 64,
  mbstdGroupSize: 4,
  mbstdChannels: 1,
  blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
} as const satisfies StyleGan2Config;

export const STYLEGAN2_PROFILES = {
  /** The study: 256², the official defaults (cbase 32768, cmax 512: 512 maps up to 64², 256 at 128², 128 at 256²). */
  paper: {
    resolution: 256,
    imageChannels: GAN_CHANNELS,
    zDim: 512,
    wDim: 512,
    mappingLayers: 8,
    mappingLrMultiplier: 0.01,
    wAvgBeta: 0.998,
    channelBase: 32768,
    channelMax: 512,
    mbstdGroupSize: 4,
    mbstdChannels: 1,
    blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
  },
  /** 64² on a 2-core CPU: 64 maps at 4²–16², 32 at 32², 16 at 64² (as the ProGAN/StyleGAN1 cpu profiles). */
  cpu: CPU_PROFILE,
  /** 32² on a CPU (the cpu32 slice preset): the cpu profile without its 64² block. */
  cpu32: { ...CPU_PROFILE, resolution: 32 },
  /** Tests: 16² (32 maps at 4², 8²; 16 at 16²), 2 mapping layers. */
  tiny: {
    resolution: 16,
    imageChannels: GAN_CHANNELS,
    zDim: 32,
    wDim: 32,
    mappingLayers: 2,
    mappingLrMultiplier: 0.01,
    wAvgBeta: 0.998,
    channelBase: 256,
    channelMax: 32,
    mbstdGroupSize: 4,
    mbstdChannels: 1,
    blackFloorSharpness: BLACK_FLOOR_SHARPNESS,
  },
} as const satisfies Record<'paper' | 'cpu' | 'cpu32' | 'tiny', StyleGan2Config>;

/** Build-time choices that do not change the variables (so not part of the architecture config). */
export interface StyleGan2BuildOptions {
  /** Modulated-conv implementation (default 'scaled', the only one differentiable twice). */
  modConvImpl?: ModConvImpl;
}

const CONFIG_KEYS = (Object.keys(STYLEGAN2_PROFILES.tiny) as (keyof StyleGan2Config)[]).filter(
  (key) => key !== 'blackFloorSharpness' && key !== 'blackFloorLeak',
);

export function checkStyleGan2Config(config: Record<string, unknown>): StyleGan2Config {
  const missing = CONFIG_KEYS.filter((key) => typeof config[key] !== 'number');
  if (missing.length > 0) throw new Error(`stylegan2: config lacks numeric ${missing.join(', ')}`);
  return config as StyleGan2Config;
}

export class StyleGan2Generator implements GeneratorModel {
  readonly architecture: ModelArchitecture;
  readonly variables: Record<string, tf.Variable>;
  readonly latentDim: number;
  readonly resolution: number;
  readonly channels: number;
  readonly numStyleLayers: number;
  readonly wDim: number;
  readonly mapping: MappingNetwork;
  readonly synthesis: SynthesisNetwork;

  constructor(
    config: StyleGan2Config,
    seed: number | string,
    private readonly buildOptions: StyleGan2BuildOptions = {},
    name = 'stylegan2',
  ) {
    const params = ParamFactory.create(`${seed}/G`, `${name}-G`);
    this.mapping = createMapping(params.scope('mapping'), {
      zDim: config.zDim,
      wDim: config.wDim,
      layers: config.mappingLayers,
      lrMultiplier: config.mappingLrMultiplier,
      wAvgBeta: config.wAvgBeta,
    });
    this.synthesis = createSynthesis(params.scope('synthesis'), {
      resolution: config.resolution,
      imageChannels: config.imageChannels,
      wDim: config.wDim,
      channelBase: config.channelBase,
      channelMax: config.channelMax,
    });
    this.architecture = { name, config: { ...config } };
    this.variables = params.variables;
    this.latentDim = config.zDim;
    this.resolution = config.resolution;
    this.channels = config.imageChannels;
    this.numStyleLayers = this.synthesis.numWs;
    this.wDim = config.wDim;
  }

  mapLatents(z: tf.Tensor2D, options: MappingOptions = {}): tf.Tensor3D {
    return mapLatents(this.mapping, z, this.numStyleLayers, options);
  }

  synthesize(
    ws: tf.Tensor3D,
    options: SynthesisOptions & Pick<SynthesisRunOptions, 'onToRgb'> = {},
  ): tf.Tensor4D {
    return tf.tidy(() =>
      outputFloor(
        synthesize(this.synthesis, ws, {
          noiseSeed: options.noiseSeed,
          modConvImpl: this.buildOptions.modConvImpl,
          onToRgb: options.onToRgb,
        }),
        this.architecture.config as StyleGan2Config,
      ),
    );
  }

  generate(z: tf.Tensor2D, options: GenerateOptions = {}): tf.Tensor4D {
    return this.synthesize(this.mapLatents(z, options), options);
  }

  dispose(): void {
    disposeVariables(this.variables);
  }
}

/** The residual discriminator as a DiscriminatorModel (StyleGAN 2 and 3 both use it). */
export class ResidualDiscriminatorModel implements DiscriminatorModel {
  readonly architecture: ModelArchitecture;
  readonly variables: Record<string, tf.Variable>;
  readonly resolution: number;
  readonly channels: number;
  readonly network: ResidualDiscriminator;

  /** `name` labels the engine-level variables and the architecture record ('<name>-discriminator'). */
  constructor(
    spec: ResidualDiscriminatorSpec,
    seed: number | string,
    name: string,
    config: Record<string, unknown>,
  ) {
    const params = ParamFactory.create(`${seed}/D`, `${name}-D`);
    this.network = createResidualDiscriminator(params, spec);
    this.architecture = { name: `${name}-discriminator`, config: { ...config } };
    this.variables = params.variables;
    this.resolution = spec.resolution;
    this.channels = spec.imageChannels;
  }

  score(images: tf.Tensor4D): tf.Tensor {
    return discriminate(this.network, images);
  }

  dispose(): void {
    disposeVariables(this.variables);
  }
}

/** The residual discriminator both StyleGAN 2 and 3 use, from the fields of their configs that shape it. */
export function styleGan2DiscriminatorSpec(
  config: Pick<
    StyleGan2Config,
    'resolution' | 'imageChannels' | 'channelBase' | 'channelMax' | 'mbstdGroupSize' | 'mbstdChannels'
  >,
): ResidualDiscriminatorSpec {
  return {
    resolution: config.resolution,
    imageChannels: config.imageChannels,
    channelBase: config.channelBase,
    channelMax: config.channelMax,
    mbstdGroupSize: config.mbstdGroupSize,
    mbstdChannels: config.mbstdChannels,
  };
}

export function buildStyleGan2Generator(
  config: Record<string, unknown>,
  seed: number,
  options: StyleGan2BuildOptions = {},
): StyleGan2Generator {
  return new StyleGan2Generator(checkStyleGan2Config(config), seed, options);
}

export function buildStyleGan2(
  config: Record<string, unknown>,
  seed: number,
  options: StyleGan2BuildOptions = {},
): GanPair & { generator: StyleGan2Generator; discriminator: ResidualDiscriminatorModel } {
  const checked = checkStyleGan2Config(config);
  return {
    generator: new StyleGan2Generator(checked, seed, options),
    discriminator: new ResidualDiscriminatorModel(
      styleGan2DiscriminatorSpec(checked),
      seed,
      'stylegan2',
      checked,
    ),
  };
}
