// The paper's U-Net, as nnU-Net's PlainConvUNet (the authors trained nnU-Net): per resolution stage two
// 3×3 conv → instance norm → LeakyReLU(0.01); a stride-2 3×3 conv opens every stage below the first; the
// decoder upsamples with a 2×2 stride-2 transposed conv, concatenates the skip and runs two more conv blocks;
// 1×1 conv heads give the logits, with deep supervision at the decoder stages.
import * as tf from '@tensorflow/tfjs';

import {
  ParamFactory,
  conv2d,
  conv2dTranspose,
  createConv2d,
  createConv2dTranspose,
  createNorm,
  disposeVariables,
  instanceNorm,
  leakyRelu,
  type Conv2dLayer,
  type Conv2dTransposeLayer,
  type Initializer,
  type NormLayer,
} from '../layers/index.js';
import { SEGMENTATION_CLASSES, SEGMENTATION_INPUT_CHANNELS, type Segmenter } from '../model.js';

export interface UNetConfig {
  /** Side of the square slices it is meant for; any side divisible by 2^(depth-1) runs. */
  inputSize: number;
  /** Number of resolution stages (the first at full resolution). */
  depth: number;
  /** Feature maps of the first stage; doubled per stage up to maxFilters. */
  baseFilters: number;
  maxFilters: number;
  /**
   * Auxiliary heads at 1/2, 1/4, ... down to the second-lowest decoder stage: nnU-Net gives the lowest one
   * weight 0, so it is not built at all.
   */
  deepSupervision: boolean;
}

export const UNET_PROFILES = {
  /** The paper: depth 6, 64 filters in the first layer (nnU-Net caps 2-D features at 512). */
  paper: { inputSize: 256, depth: 6, baseFilters: 64, maxFilters: 512, deepSupervision: true },
  /** CPU runs on 64² slices: stages at 64, 32, 16, 8 px. */
  cpu: { inputSize: 64, depth: 4, baseFilters: 16, maxFilters: 128, deepSupervision: true },
  /** Tests: depth 4 (not 3) so that a deep-supervision output survives dropping the lowest one. */
  tiny: { inputSize: 32, depth: 4, baseFilters: 8, maxFilters: 32, deepSupervision: true },
} as const satisfies Record<string, UNetConfig>;

export type UNetProfile = keyof typeof UNET_PROFILES;

const NEGATIVE_SLOPE = 0.01;
/** nnU-Net's InitWeights_He(1e-2), for every conv including the heads. */
const HE_LEAKY: Initializer = { kind: 'he', negativeSlope: NEGATIVE_SLOPE };

interface ConvBlock {
  conv: Conv2dLayer;
  norm: NormLayer;
}

interface EncoderStage {
  blocks: [ConvBlock, ConvBlock];
}

interface DecoderStage {
  up: Conv2dTransposeLayer;
  blocks: [ConvBlock, ConvBlock];
  /** Only where the stage's logits are used (full resolution always, the others with deep supervision). */
  head?: Conv2dLayer;
}

/** Feature maps per resolution stage: base·2^i capped at maxFilters. */
export function unetFilters(config: Pick<UNetConfig, 'depth' | 'baseFilters' | 'maxFilters'>): number[] {
  return Array.from({ length: config.depth }, (_, i) =>
    Math.min(config.baseFilters * 2 ** i, config.maxFilters),
  );
}

/** Levels (0 = full resolution) whose logits the model returns in training mode. */
export function unetOutputLevels(config: Pick<UNetConfig, 'depth' | 'deepSupervision'>): number[] {
  const lowestUsed = config.deepSupervision ? config.depth - 3 : 0;
  return Array.from({ length: Math.max(lowestUsed, 0) + 1 }, (_, level) => level);
}

function validate(config: UNetConfig): void {
  const { depth, baseFilters, maxFilters, inputSize } = config;
  if (!Number.isInteger(depth) || depth < 2)
    throw new Error(`U-Net: depth must be an integer >= 2, got ${depth}`);
  if (!(baseFilters >= 1 && maxFilters >= baseFilters)) {
    throw new Error(`U-Net: need 1 <= baseFilters <= maxFilters, got ${baseFilters}, ${maxFilters}`);
  }
  checkInputSide(inputSize, inputSize, depth);
}

function checkInputSide(height: number, width: number, depth: number): void {
  const step = 2 ** (depth - 1);
  if (height % step !== 0 || width % step !== 0) {
    throw new Error(`U-Net of depth ${depth}: input ${height}×${width} is not divisible by ${step}`);
  }
}

function createBlock(params: ParamFactory, inChannels: number, outChannels: number, strides = 1): ConvBlock {
  return {
    // No bias: the instance norm right after removes any per-channel constant (its gradient would be 0).
    conv: createConv2d(params.scope('conv'), {
      inChannels,
      outChannels,
      kernelSize: 3,
      strides,
      bias: false,
      init: HE_LEAKY,
    }),
    norm: createNorm(params.scope('norm'), { channels: outChannels }),
  };
}

function runBlock(x: tf.Tensor4D, block: ConvBlock): tf.Tensor4D {
  return leakyRelu(instanceNorm(conv2d(x, block.conv), block.norm), NEGATIVE_SLOPE);
}

export function buildUNet(config: UNetConfig, seed: number): Segmenter {
  validate(config);
  const params = ParamFactory.create(seed, 'unet');
  const filters = unetFilters(config);
  const outputLevels = new Set(unetOutputLevels(config));

  const encoder: EncoderStage[] = filters.map((out, level) => {
    const stage = params.scope(`enc${level}`);
    const inChannels = level === 0 ? SEGMENTATION_INPUT_CHANNELS : filters[level - 1]!;
    return {
      blocks: [
        createBlock(stage.scope('block0'), inChannels, out, level === 0 ? 1 : 2),
        createBlock(stage.scope('block1'), out, out),
      ],
    };
  });

  // decoder[level] for levels depth-2 .. 0; built bottom-up so the record reads in data-flow order.
  const decoder: DecoderStage[] = [];
  for (let level = config.depth - 2; level >= 0; level--) {
    const stage = params.scope(`dec${level}`);
    const out = filters[level]!;
    decoder[level] = {
      // No bias: through the concat and the next conv it becomes a per-channel constant (up to border
      // effects of the zero padding) that the instance norm removes.
      up: createConv2dTranspose(stage.scope('up'), {
        inChannels: filters[level + 1]!,
        outChannels: out,
        kernelSize: 2,
        strides: 2,
        bias: false,
      }),
      blocks: [
        createBlock(stage.scope('block0'), 2 * out, out),
        createBlock(stage.scope('block1'), out, out),
      ],
      head: outputLevels.has(level)
        ? createConv2d(stage.scope('head'), {
            inChannels: out,
            outChannels: SEGMENTATION_CLASSES,
            kernelSize: 1,
            init: HE_LEAKY,
          })
        : undefined,
    };
  }

  const forward = (images: tf.Tensor4D, training: boolean): tf.Tensor4D[] =>
    tf.tidy(() => {
      checkInputSide(images.shape[1], images.shape[2], config.depth);
      const skips: tf.Tensor4D[] = [];
      let x = images;
      for (const stage of encoder) {
        x = runBlock(runBlock(x, stage.blocks[0]), stage.blocks[1]);
        skips.push(x);
      }
      const outputs: tf.Tensor4D[] = [];
      for (let level = config.depth - 2; level >= 0; level--) {
        const stage = decoder[level]!;
        x = tf.concat([conv2dTranspose(x, stage.up), skips[level]!], 3);
        x = runBlock(runBlock(x, stage.blocks[0]), stage.blocks[1]);
        if (stage.head && (training || level === 0)) outputs.unshift(conv2d(x, stage.head));
      }
      return outputs;
    });

  const variables = params.variables;
  return {
    architecture: { name: 'unet', config: { ...config } },
    variables,
    forward,
    dispose: () => disposeVariables(variables),
  };
}
