// The paper's second segmenter: a 2-D Swin transformer encoder with an UperNet-style decoder.
//
// Encoder (Liu et al. 2021): a k = s = patch conv embeds patches; each stage is a stack of Swin blocks
//   x = x + proj(W-MSA(LN(x)))   (window attention with a learned relative position bias; every second block
//                                  cyclically shifts by window/2 and masks pairs the shift made adjacent)
//   x = x + fc2(GELU(fc1(LN(x))))
// and patch merging (2×2 neighbourhood concat → LN → linear 4C→2C) opens every stage after the first.
// Decoder (UperNet's FPN part): a LayerNorm per stage output, lateral 1×1 conv modules, top-down bilinear
// upsample-and-add, a 3×3 conv module per level, all levels upsampled to the finest and fused by a 3×3 conv
// module, then a 1×1 classifier whose logits are bilinearly resized to the input. Conv modules are
// conv → group norm → ReLU (UperNet uses batch norm, which federated averaging and small batches handle
// badly).
import * as tf from '@tensorflow/tfjs';

import {
  ParamFactory,
  conv2d,
  createConv2d,
  createDense,
  createGroupNorm,
  createNorm,
  dense,
  disposeVariables,
  gelu,
  groupNorm,
  layerNorm,
  resizeBilinear,
  type Conv2dLayer,
  type DenseLayer,
  type GroupNormLayer,
  type Initializer,
  type NormLayer,
} from '../layers/index.js';
import { SEGMENTATION_CLASSES, SEGMENTATION_INPUT_CHANNELS, type Segmenter } from '../model.js';
import {
  cyclicShift,
  needsAttentionMask,
  relativePositionIndex,
  shiftedWindowMask,
  windowGeometry,
  windowPartition,
  windowReverse,
  type WindowGeometry,
} from './swin-windows.js';

export interface SwinConfig {
  /** Side of the square slices it is meant for; any side divisible by patchSize·2^(stages-1) runs. */
  inputSize: number;
  patchSize: number;
  /** Channels of the first stage; doubled by every patch merging. */
  embedDim: number;
  /** Swin blocks per stage. */
  depths: readonly number[];
  /** Attention heads per stage. */
  heads: readonly number[];
  /** Side of the attention windows (and of the relative position bias table, (2w-1)² rows). */
  window: number;
  /** Hidden width of the block MLP over its input width. */
  mlpRatio: number;
  /** Channels of the decoder's conv modules. */
  decoderChannels: number;
  /** Groups of the decoder's group norms. */
  decoderGroups: number;
}

export const SWIN_PROFILES = {
  /**
   * Swin-B + UperNet as in the paper, except the window: 8, not 7. At 256² with patch 4 the stages are 64,
   * 32, 16 and 8 tokens wide: multiples of 8, but window 7 would pad every stage (64 → 70, ..., 8 → 14) and
   * waste up to 3× the attention work on padding. We train from scratch, so there is no pretrained 7×7 bias
   * table to keep; `window: 7` still runs (padded, with the padding masked).
   */
  paper: {
    inputSize: 256,
    patchSize: 4,
    embedDim: 128,
    depths: [2, 2, 18, 2],
    heads: [4, 8, 16, 32],
    window: 8,
    mlpRatio: 4,
    decoderChannels: 512,
    decoderGroups: 32,
  },
  /**
   * CPU runs on 64²: patch 2 keeps a 32² token grid (patch 4 is ~4x faster but leaves 16², too coarse for
   * small tumour parts), windows of 4×4; a 32-channel decoder, since at 64 its 3×3 convs at 32² took over
   * half the step.
   */
  cpu: {
    inputSize: 64,
    patchSize: 2,
    embedDim: 32,
    depths: [2, 2],
    heads: [2, 4],
    window: 4,
    mlpRatio: 4,
    decoderChannels: 32,
    decoderGroups: 8,
  },
  tiny: {
    inputSize: 32,
    patchSize: 2,
    embedDim: 16,
    depths: [2, 2],
    heads: [2, 4],
    window: 4,
    mlpRatio: 2,
    decoderChannels: 16,
    decoderGroups: 4,
  },
} as const satisfies Record<string, SwinConfig>;

export type SwinProfile = keyof typeof SWIN_PROFILES;

/** The reference Swin's initialisation of linear layers and the bias table: N(0, 0.02²) truncated. */
const TRANSFORMER_INIT: Initializer = { kind: 'normal', std: 0.02, truncated: true };

interface AttentionLayer {
  qkv: DenseLayer;
  proj: DenseLayer;
  /** [(2w-1)², heads] */
  relativeBiasTable: tf.Variable;
  heads: number;
}

interface SwinBlock {
  norm1: NormLayer;
  attention: AttentionLayer;
  norm2: NormLayer;
  fc1: DenseLayer;
  fc2: DenseLayer;
  shifted: boolean;
}

interface PatchMerging {
  norm: NormLayer;
  reduction: DenseLayer;
}

interface SwinStage {
  merge?: PatchMerging;
  blocks: SwinBlock[];
  /** The stage output's norm, before the decoder reads it. */
  outNorm: NormLayer;
}

interface ConvModule {
  conv: Conv2dLayer;
  norm: GroupNormLayer;
}

function validate(config: SwinConfig): void {
  const { depths, heads, embedDim, patchSize, window, inputSize, decoderChannels, decoderGroups } = config;
  if (depths.length === 0 || depths.length !== heads.length) {
    throw new Error(`Swin: need one head count per stage, got depths [${depths}] and heads [${heads}]`);
  }
  heads.forEach((h, stage) => {
    const channels = embedDim * 2 ** stage;
    if (!Number.isInteger(h) || h < 1 || channels % h !== 0) {
      throw new Error(`Swin: stage ${stage} has ${channels} channels, not divisible into ${h} heads`);
    }
  });
  if (!Number.isInteger(patchSize) || patchSize < 1) throw new Error(`Swin: bad patch size ${patchSize}`);
  if (!Number.isInteger(window) || window < 2) {
    throw new Error(`Swin: window must be an integer >= 2, got ${window}`);
  }
  if (decoderChannels % decoderGroups !== 0) {
    throw new Error(`Swin: ${decoderChannels} decoder channels do not split into ${decoderGroups} groups`);
  }
  checkInputSide(inputSize, inputSize, config);
}

function checkInputSide(height: number, width: number, config: SwinConfig): void {
  const step = config.patchSize * 2 ** (config.depths.length - 1);
  if (height % step !== 0 || width % step !== 0) {
    throw new Error(`Swin: input ${height}×${width} is not divisible by patch·2^(stages-1) = ${step}`);
  }
}

function createConvModule(
  params: ParamFactory,
  inChannels: number,
  config: SwinConfig,
  kernelSize: number,
): ConvModule {
  const channels = config.decoderChannels;
  return {
    conv: createConv2d(params.scope('conv'), { inChannels, outChannels: channels, kernelSize, bias: false }),
    norm: createGroupNorm(params.scope('norm'), { channels, groups: config.decoderGroups }),
  };
}

function runConvModule(x: tf.Tensor4D, module: ConvModule): tf.Tensor4D {
  return tf.relu(groupNorm(conv2d(x, module.conv), module.norm));
}

function createBlock(
  params: ParamFactory,
  channels: number,
  heads: number,
  config: SwinConfig,
  shifted: boolean,
): SwinBlock {
  const hidden = Math.round(channels * config.mlpRatio);
  const attention = params.scope('attn');
  const tableRows = (2 * config.window - 1) ** 2;
  return {
    norm1: createNorm(params.scope('norm1'), { channels }),
    attention: {
      qkv: createDense(attention.scope('qkv'), {
        inFeatures: channels,
        outFeatures: 3 * channels,
        init: TRANSFORMER_INIT,
      }),
      proj: createDense(attention.scope('proj'), {
        inFeatures: channels,
        outFeatures: channels,
        init: TRANSFORMER_INIT,
      }),
      relativeBiasTable: attention.variable('relativeBiasTable', [tableRows, heads], TRANSFORMER_INIT),
      heads,
    },
    norm2: createNorm(params.scope('norm2'), { channels }),
    fc1: createDense(params.scope('mlp').scope('fc1'), {
      inFeatures: channels,
      outFeatures: hidden,
      init: TRANSFORMER_INIT,
    }),
    fc2: createDense(params.scope('mlp').scope('fc2'), {
      inFeatures: hidden,
      outFeatures: channels,
      init: TRANSFORMER_INIT,
    }),
    shifted,
  };
}

/**
 * Per-geometry constants (relative position index, attention mask) as tensors, made on first use and kept
 * until the model is disposed; they never depend on the weights.
 */
class WindowConstants {
  private readonly cache = new Map<string, tf.Tensor>();

  constructor(private readonly tableWindow: number) {}

  relativeIndex(window: number): tf.Tensor1D {
    return this.get(`index:${window}`, () =>
      tf.tensor1d(relativePositionIndex(window, this.tableWindow), 'int32'),
    ) as tf.Tensor1D;
  }

  /** [windows per image, 1, w², w²] (broadcasts over the heads), or null when nothing is masked. */
  mask(geometry: WindowGeometry): tf.Tensor4D | null {
    if (!needsAttentionMask(geometry)) return null;
    const { window, shift, height, width, paddedHeight, paddedWidth } = geometry;
    const key = `mask:${window}:${shift}:${height}:${width}:${paddedHeight}:${paddedWidth}`;
    const windows = (paddedHeight / window) * (paddedWidth / window);
    const tokens = window * window;
    return this.get(key, () =>
      tf.tensor4d(shiftedWindowMask(geometry), [windows, 1, tokens, tokens]),
    ) as tf.Tensor4D;
  }

  dispose(): void {
    for (const tensor of this.cache.values()) tensor.dispose();
    this.cache.clear();
  }

  private get(key: string, make: () => tf.Tensor): tf.Tensor {
    let tensor = this.cache.get(key);
    if (!tensor) {
      // Made inside the caller's tidy: keep it, the cache owns it.
      tensor = tf.keep(make());
      this.cache.set(key, tensor);
    }
    return tensor;
  }
}

/** Multi-head self-attention within windows [B, L, C] (B = batch · windows per image). */
function windowAttention(
  windows: tf.Tensor3D,
  layer: AttentionLayer,
  relativeIndex: tf.Tensor1D,
  mask: tf.Tensor4D | null,
): tf.Tensor3D {
  const [b, tokens, channels] = windows.shape;
  const heads = layer.heads;
  const headDim = channels / heads;
  // qkv's 3C outputs are laid out (q|k|v, head, dim) as in the reference implementation.
  const [q, k, v] = tf.split(dense(windows, layer.qkv), 3, 2);
  const toHeads = (t: tf.Tensor): tf.Tensor4D =>
    tf.transpose(tf.reshape(t, [b, tokens, heads, headDim]), [0, 2, 1, 3]);
  let scores: tf.Tensor4D = tf.matMul(toHeads(tf.mul(q!, headDim ** -0.5)), toHeads(k!), false, true);
  // [L·L, heads] rows of the table -> [heads, L, L], broadcast over the windows.
  const bias = tf.transpose(
    tf.reshape(tf.gather(layer.relativeBiasTable, relativeIndex), [tokens, tokens, heads]),
    [2, 0, 1],
  );
  scores = tf.add(scores, bias);
  if (mask) {
    const windowsPerImage = mask.shape[0];
    const perImage = tf.reshape(scores, [b / windowsPerImage, windowsPerImage, heads, tokens, tokens]);
    scores = tf.reshape(tf.add(perImage, mask), [b, heads, tokens, tokens]);
  }
  const attended = tf.matMul(tf.softmax(scores), toHeads(v!));
  const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [b, tokens, channels]) as tf.Tensor3D;
  return dense(merged, layer.proj);
}

function swinBlock(
  x: tf.Tensor4D,
  block: SwinBlock,
  config: SwinConfig,
  constants: WindowConstants,
): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const geometry = windowGeometry(h, w, config.window, block.shifted);
  const { window, shift, paddedHeight, paddedWidth } = geometry;

  let y = layerNorm(x, block.norm1);
  if (paddedHeight !== h || paddedWidth !== w) {
    y = tf.pad(y, [
      [0, 0],
      [0, paddedHeight - h],
      [0, paddedWidth - w],
      [0, 0],
    ]);
  }
  if (shift > 0) y = cyclicShift(y, shift);
  const attended = windowAttention(
    windowPartition(y, window),
    block.attention,
    constants.relativeIndex(window),
    constants.mask(geometry),
  );
  y = windowReverse(attended, window, n, paddedHeight, paddedWidth);
  if (shift > 0) y = cyclicShift(y, -shift);
  if (paddedHeight !== h || paddedWidth !== w) y = tf.slice(y, [0, 0, 0, 0], [n, h, w, c]);
  const afterAttention = tf.add(x, y);
  const mlp = dense(gelu(dense(layerNorm(afterAttention, block.norm2), block.fc1)), block.fc2);
  return tf.add(afterAttention, mlp);
}

/**
 * 2×2 neighbourhoods to channels in the reference order (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
 * x[1::2, 1::2]), then LayerNorm and a linear 4C -> 2C.
 */
function patchMerging(x: tf.Tensor4D, merge: PatchMerging): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const grid = tf.reshape(x, [n, h / 2, 2, w / 2, 2, c]);
  const stacked = tf.reshape(tf.transpose(grid, [0, 1, 3, 4, 2, 5]), [n, h / 2, w / 2, 4 * c]) as tf.Tensor4D;
  return dense(layerNorm(stacked, merge.norm), merge.reduction);
}

export function buildSwinSegmenter(config: SwinConfig, seed: number): Segmenter {
  validate(config);
  const params = ParamFactory.create(seed, 'swin');
  const stageChannels = config.depths.map((_, stage) => config.embedDim * 2 ** stage);

  const embed = params.scope('patchEmbed');
  const patchEmbed = createConv2d(embed.scope('proj'), {
    inChannels: SEGMENTATION_INPUT_CHANNELS,
    outChannels: config.embedDim,
    kernelSize: config.patchSize,
    strides: config.patchSize,
    padding: 'valid',
    init: { kind: 'glorot' },
  });
  const patchNorm = createNorm(embed.scope('norm'), { channels: config.embedDim });

  const stages: SwinStage[] = config.depths.map((depth, stage) => {
    const scope = params.scope(`stage${stage}`);
    const channels = stageChannels[stage]!;
    const merge: PatchMerging | undefined =
      stage === 0
        ? undefined
        : {
            norm: createNorm(scope.scope('merge').scope('norm'), { channels: 4 * stageChannels[stage - 1]! }),
            reduction: createDense(scope.scope('merge').scope('reduction'), {
              inFeatures: 4 * stageChannels[stage - 1]!,
              outFeatures: channels,
              bias: false,
              init: TRANSFORMER_INIT,
            }),
          };
    const blocks = Array.from({ length: depth }, (_, i) =>
      createBlock(scope.scope(`block${i}`), channels, config.heads[stage]!, config, i % 2 === 1),
    );
    return { merge, blocks, outNorm: createNorm(scope.scope('outNorm'), { channels }) };
  });

  const decoder = params.scope('decoder');
  const laterals = stageChannels.map((channels, level) =>
    createConvModule(decoder.scope(`lateral${level}`), channels, config, 1),
  );
  const fpnConvs = stageChannels.map((_, level) =>
    createConvModule(decoder.scope(`fpn${level}`), config.decoderChannels, config, 3),
  );
  const fuse = createConvModule(
    decoder.scope('fuse'),
    stageChannels.length * config.decoderChannels,
    config,
    3,
  );
  const classifier = createConv2d(decoder.scope('classifier'), {
    inChannels: config.decoderChannels,
    outChannels: SEGMENTATION_CLASSES,
    kernelSize: 1,
    init: { kind: 'normal', std: 0.01 },
  });

  const constants = new WindowConstants(config.window);

  // Swin has no deep supervision here (mmseg's UperNet adds an auxiliary FCN head on stage 3 instead; its
  // stride does not fit the 1/2, 1/4, ... outputs of the Segmenter contract): `training` changes nothing.
  const forward = (images: tf.Tensor4D, _training: boolean): tf.Tensor4D[] =>
    tf.tidy(() => {
      const [, height, width] = images.shape;
      checkInputSide(height, width, config);
      let x = layerNorm(conv2d(images, patchEmbed), patchNorm);
      const features: tf.Tensor4D[] = [];
      for (const stage of stages) {
        if (stage.merge) x = patchMerging(x, stage.merge);
        for (const block of stage.blocks) x = swinBlock(x, block, config, constants);
        features.push(layerNorm(x, stage.outNorm));
      }

      const lateral = features.map((feature, level) => runConvModule(feature, laterals[level]!));
      for (let level = lateral.length - 2; level >= 0; level--) {
        const [, h, w] = lateral[level]!.shape;
        lateral[level] = tf.add(lateral[level]!, resizeBilinear(lateral[level + 1]!, [h, w]));
      }
      const [, finestH, finestW] = lateral[0]!.shape;
      const levels = lateral.map((l, level) =>
        resizeBilinear(runConvModule(l, fpnConvs[level]!), [finestH, finestW]),
      );
      const fused = runConvModule(levels.length === 1 ? levels[0]! : tf.concat(levels, 3), fuse);
      return [resizeBilinear(conv2d(fused, classifier), [height, width])];
    });

  const variables = params.variables;
  return {
    architecture: {
      name: 'swin',
      config: { ...config, depths: [...config.depths], heads: [...config.heads] },
    },
    variables,
    forward,
    dispose: () => {
      constants.dispose();
      disposeVariables(variables);
    },
  };
}
