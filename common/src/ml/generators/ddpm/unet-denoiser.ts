// The denoiser of the diffusion model: a U-Net ε_θ(x_t, t) in the layout of Ho et al. (2020) as OpenAI's
// improved-diffusion writes it (whose flags the paper's "256 px, 64 ch, 3 res blocks, 4000 steps" settings
// match):
//
//   t → sinusoidal embedding (base channels; cos half then sin half) → dense(4·base) → SiLU → dense(4·base)
//   x → 3×3 conv (base) → per level: numResBlocks × [res block (+ self-attention at the listed resolutions)],
//       then a stride-2 3×3 conv (all but the last level)
//   middle: res block, self-attention, res block
//   per level, bottom up: (numResBlocks + 1) × [concat the matching encoder activation, res block
//       (+ attention)], then nearest ×2 + 3×3 conv (all but the top level)
//   out: GroupNorm → SiLU → 3×3 conv (zero-initialised) → ε̂ with the image's channels
//
// Res block: GroupNorm → SiLU → 3×3 conv, + dense(SiLU(time embedding)) per channel, GroupNorm → SiLU → 3×3
// conv (zero-initialised), + the input (through a 1×1 conv when the channels change). Attention: GroupNorm,
// one dense layer to q, k, v, softmax(q kᵀ/√d) v per head over all spatial positions, dense projection
// (zero-initialised), + the input. Weights: Glorot uniform (Ho et al.'s variance_scaling 'fan_avg'), biases
// 0, the three zero-initialised layers above as in both reference codes, so a new block is the identity and a
// new model predicts 0. No dropout (Ho et al. use it only for CIFAR-10; improved-diffusion's default is 0).
//
// GroupNorm and the conv biases use this folder's fast ops (group-norm.ts, fast-ops.ts): the same maths with
// gradients that avoid tfjs-wasm's slow non-innermost reductions.
import * as tf from '@tensorflow/tfjs';

import {
  GLOROT,
  ParamFactory,
  ZEROS,
  createConv2d,
  createDense,
  createGroupNorm,
  dense,
  disposeVariables,
  type Conv2dLayer,
  type DenseLayer,
  type GroupNormLayer,
} from '../../layers/index.js';
import type { TrainableModel } from '../../model.js';
import { addChannelBias } from './fast-ops.js';
import { fastGroupNorm } from './group-norm.js';

export interface DiffusionUNetConfig {
  /** Side of the square slices it is trained on; any side divisible by 2^(levels − 1) runs. */
  imageSize: number;
  /** Channels of the image and of ε̂ (5: T1, T2, FLAIR, T1ce, annotation). */
  imageChannels: number;
  /** Feature maps of the first level ("64 ch" in the paper). */
  baseChannels: number;
  /** Per level, a multiple of baseChannels; the number of entries is the number of levels. */
  channelMults: number[];
  /** Res blocks per level on the way down (the way up has one more, for the downsampling conv's skip). */
  numResBlocks: number;
  /** Self-attention after the res blocks of the levels at these resolutions (pixels, at imageSize). */
  attentionResolutions: number[];
  /** Heads of every attention block (channels must divide). */
  numHeads: number;
  /** GroupNorm groups (32 in both reference codes; every level's channels must divide). */
  groups: number;
}

export const DIFFUSION_UNET_PROFILES = {
  /**
   * The paper: 256², 64 channels, 3 res blocks; improved-diffusion's 256² channel multipliers and its default
   * attention at 16² and 8² with 4 heads.
   */
  paper: {
    imageSize: 256,
    imageChannels: 5,
    baseChannels: 64,
    channelMults: [1, 1, 2, 2, 4, 4],
    numResBlocks: 3,
    attentionResolutions: [16, 8],
    numHeads: 4,
    groups: 32,
  },
  /**
   * CPU runs on the cpu64 slice preset (the segmenters' `cpu` size): levels at 64, 32, 16, 8 px (32/64/64/64
   * channels, so that a level reaches 8² for attention).
   */
  cpu: {
    imageSize: 64,
    imageChannels: 5,
    baseChannels: 32,
    channelMults: [1, 2, 2, 2],
    numResBlocks: 1,
    attentionResolutions: [8],
    numHeads: 1,
    groups: 8,
  },
  /**
   * CPU runs on the cpu32 slice preset: levels at 32, 16, 8 px (32/64/64 channels), 1 res block (1.12 M parameters).
   * 2 blocks (1.63 M) made 855 steps in 15 minutes against 1,295 with 1, and drew 3.05x the real tumour area
   * against 1.60x.
   */
  cpu32: {
    imageSize: 32,
    imageChannels: 5,
    baseChannels: 32,
    channelMults: [1, 2, 2],
    numResBlocks: 1,
    attentionResolutions: [8],
    numHeads: 1,
    groups: 8,
  },
  /** Tests: 16², levels at 16 and 8 px, 2 heads at 8² so the multi-head path runs. */
  tiny: {
    imageSize: 16,
    imageChannels: 5,
    baseChannels: 8,
    channelMults: [1, 2],
    numResBlocks: 1,
    attentionResolutions: [8],
    numHeads: 2,
    groups: 4,
  },
} as const satisfies Record<string, DiffusionUNetConfig>;

export type DiffusionUNetProfile = keyof typeof DIFFUSION_UNET_PROFILES;

export const DIFFUSION_UNET_NAME = 'ddpm-unet';

export interface DiffusionUNet extends TrainableModel {
  readonly config: DiffusionUNetConfig;
  /**
   * x_t [N, H, W, imageChannels] and N timesteps (0-based, as numbers: the embedding is computed in JS) →
   * ε̂ [N, H, W, imageChannels]. Call inside tf.tidy.
   */
  forward(x: tf.Tensor4D, timesteps: ArrayLike<number>): tf.Tensor4D;
}

interface ResBlock {
  norm1: GroupNormLayer;
  conv1: Conv2dLayer;
  time: DenseLayer;
  norm2: GroupNormLayer;
  conv2: Conv2dLayer;
  skip?: Conv2dLayer;
}

export interface AttentionBlock {
  norm: GroupNormLayer;
  qkv: DenseLayer;
  proj: DenseLayer;
  heads: number;
}

/** One res block with optional attention after it, or a resampling conv. */
type Step =
  | { kind: 'res'; res: ResBlock; attention?: AttentionBlock }
  | { kind: 'down'; conv: Conv2dLayer }
  | { kind: 'up'; conv: Conv2dLayer };

/** Throws listing every inconsistency of a config. */
export function validateDiffusionUNetConfig(config: DiffusionUNetConfig): void {
  const problems: string[] = [];
  const positiveInt = (name: string, value: unknown) => {
    if (!Number.isSafeInteger(value) || (value as number) < 1)
      problems.push(`${name} must be a positive integer`);
  };
  positiveInt('imageSize', config.imageSize);
  positiveInt('imageChannels', config.imageChannels);
  positiveInt('baseChannels', config.baseChannels);
  positiveInt('numHeads', config.numHeads);
  positiveInt('groups', config.groups);
  if (!Number.isSafeInteger(config.numResBlocks) || config.numResBlocks < 0) {
    problems.push('numResBlocks must be an integer >= 0');
  }
  if (!Array.isArray(config.channelMults) || config.channelMults.length === 0) {
    problems.push('channelMults must be a non-empty array');
  } else {
    config.channelMults.forEach((mult) => positiveInt('every channel multiplier', mult));
    const levels = config.channelMults.length;
    if (config.imageSize % 2 ** (levels - 1) !== 0) {
      problems.push(`imageSize ${config.imageSize} is not divisible by 2^${levels - 1} (${levels} levels)`);
    }
    if (config.baseChannels % 2 !== 0) problems.push('baseChannels must be even (sinusoidal embedding)');
    for (const mult of config.channelMults) {
      const channels = mult * config.baseChannels;
      if (channels % config.groups !== 0)
        problems.push(`${channels} channels do not split into ${config.groups} groups`);
      if (channels % config.numHeads !== 0)
        problems.push(`${channels} channels do not split into ${config.numHeads} heads`);
    }
    const resolutions = config.channelMults.map((_, level) => config.imageSize / 2 ** level);
    if (!Array.isArray(config.attentionResolutions)) problems.push('attentionResolutions must be an array');
    else {
      for (const resolution of config.attentionResolutions) {
        if (!resolutions.includes(resolution)) {
          problems.push(`attention at ${resolution}² matches no level (${resolutions.join(', ')})`);
        }
      }
    }
  }
  if (problems.length > 0) throw new Error(`diffusion U-Net config: ${[...new Set(problems)].join('; ')}`);
}

/** Sinusoidal embedding of timesteps, [N, dim]: [cos(t·f_i), sin(t·f_i)], f_i = 10000^(−i/(dim/2)). */
export function timestepEmbedding(
  timesteps: ArrayLike<number>,
  dim: number,
  maxPeriod = 10_000,
): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(timesteps.length * dim);
  for (let n = 0; n < timesteps.length; n++) {
    for (let i = 0; i < half; i++) {
      const angle = timesteps[n]! * Math.exp((-Math.log(maxPeriod) * i) / half);
      out[n * dim + i] = Math.cos(angle);
      out[n * dim + half + i] = Math.sin(angle);
    }
  }
  return out;
}

/**
 * A convolution whose bias is added by addChannelBias (plus an optional per-sample term), so the bias
 * gradient is one matmul instead of tfjs' Sum over [N, H, W] (slow on wasm); the forward pays one extra add.
 */
function conv2d(x: tf.Tensor4D, layer: Conv2dLayer, perSample?: tf.Tensor2D): tf.Tensor4D {
  const y = tf.conv2d(x, layer.kernel as tf.Tensor4D, layer.strides, layer.padding);
  return layer.bias ? addChannelBias(y, layer.bias as tf.Tensor1D, perSample) : y;
}

function silu<T extends tf.Tensor>(x: T): T {
  return tf.mul(x, tf.sigmoid(x));
}

function createResBlock(
  params: ParamFactory,
  inChannels: number,
  outChannels: number,
  timeChannels: number,
  groups: number,
): ResBlock {
  return {
    norm1: createGroupNorm(params.scope('norm1'), { channels: inChannels, groups }),
    conv1: createConv2d(params.scope('conv1'), { inChannels, outChannels, kernelSize: 3, init: GLOROT }),
    time: createDense(params.scope('time'), {
      inFeatures: timeChannels,
      outFeatures: outChannels,
      init: GLOROT,
    }),
    norm2: createGroupNorm(params.scope('norm2'), { channels: outChannels, groups }),
    conv2: createConv2d(params.scope('conv2'), {
      inChannels: outChannels,
      outChannels,
      kernelSize: 3,
      init: ZEROS,
    }),
    skip:
      inChannels === outChannels
        ? undefined
        : createConv2d(params.scope('skip'), { inChannels, outChannels, kernelSize: 1, init: GLOROT }),
  };
}

/** `timeAct` is SiLU(time embedding) [N, timeChannels], shared by every block. */
function resBlock(x: tf.Tensor4D, timeAct: tf.Tensor2D, block: ResBlock): tf.Tensor4D {
  let h = conv2d(silu(fastGroupNorm(x, block.norm1)), block.conv1, dense(timeAct, block.time));
  h = conv2d(silu(fastGroupNorm(h, block.norm2)), block.conv2);
  return tf.add(block.skip ? conv2d(x, block.skip) : x, h);
}

export function createAttention(
  params: ParamFactory,
  channels: number,
  heads: number,
  groups: number,
): AttentionBlock {
  return {
    norm: createGroupNorm(params.scope('norm'), { channels, groups }),
    qkv: createDense(params.scope('qkv'), { inFeatures: channels, outFeatures: 3 * channels, init: GLOROT }),
    proj: createDense(params.scope('proj'), { inFeatures: channels, outFeatures: channels, init: ZEROS }),
    heads,
  };
}

/** Multi-head self-attention over the H·W positions, plus the input. Call inside tf.tidy. */
export function attention(x: tf.Tensor4D, block: AttentionBlock): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const positions = h * w;
  const heads = block.heads;
  const d = c / heads;
  const qkv = dense(tf.reshape(fastGroupNorm(x, block.norm), [n, positions, c]), block.qkv);
  const [q, k, v] = tf.split(qkv, 3, 2) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
  // [n, positions, c] -> [n·heads, positions, d]
  const byHead = (t: tf.Tensor3D): tf.Tensor3D =>
    heads === 1
      ? t
      : tf.reshape(tf.transpose(tf.reshape(t, [n, positions, heads, d]), [0, 2, 1, 3]), [
          n * heads,
          positions,
          d,
        ]);
  const scores = tf.mul(tf.matMul(byHead(q), byHead(k), false, true), 1 / Math.sqrt(d));
  let mixed = tf.matMul(tf.softmax(scores), byHead(v));
  if (heads > 1)
    mixed = tf.reshape(tf.transpose(tf.reshape(mixed, [n, heads, positions, d]), [0, 2, 1, 3]), [
      n,
      positions,
      c,
    ]);
  return tf.add(x, tf.reshape(dense(mixed, block.proj), [n, h, w, c]));
}

/** Nearest-neighbour ×2 (what both reference codes use before the upsampling conv). */
function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const [, h, w] = x.shape;
  return tf.image.resizeNearestNeighbor(x, [2 * h, 2 * w], false, false);
}

export function buildDiffusionUNet(config: DiffusionUNetConfig, seed: number): DiffusionUNet {
  validateDiffusionUNetConfig(config);
  const frozen: DiffusionUNetConfig = structuredClone(config);
  const { baseChannels: base, channelMults, numResBlocks, groups, numHeads } = frozen;
  const params = ParamFactory.create(seed, DIFFUSION_UNET_NAME);
  const timeChannels = 4 * base;
  const time0 = createDense(params.scope('time').scope('dense0'), {
    inFeatures: base,
    outFeatures: timeChannels,
    init: GLOROT,
  });
  const time1 = createDense(params.scope('time').scope('dense1'), {
    inFeatures: timeChannels,
    outFeatures: timeChannels,
    init: GLOROT,
  });
  const input = createConv2d(params.scope('in'), {
    inChannels: frozen.imageChannels,
    outChannels: base,
    kernelSize: 3,
    init: GLOROT,
  });
  const attentionAt = (level: number) => frozen.attentionResolutions.includes(frozen.imageSize / 2 ** level);

  // Encoder: a flat list of steps; every step's output is kept for the decoder's concatenations.
  const down: Step[] = [];
  const skipChannels: number[] = [base];
  let channels = base;
  channelMults.forEach((mult, level) => {
    const scope = params.scope(`down${level}`);
    for (let i = 0; i < numResBlocks; i++) {
      const out = mult * base;
      const res = createResBlock(scope.scope(`res${i}`), channels, out, timeChannels, groups);
      channels = out;
      const attention = attentionAt(level)
        ? createAttention(scope.scope(`attn${i}`), channels, numHeads, groups)
        : undefined;
      down.push({ kind: 'res', res, attention });
      skipChannels.push(channels);
    }
    if (level < channelMults.length - 1) {
      down.push({
        kind: 'down',
        conv: createConv2d(scope.scope('downsample'), {
          inChannels: channels,
          outChannels: channels,
          kernelSize: 3,
          strides: 2,
          init: GLOROT,
        }),
      });
      skipChannels.push(channels);
    }
  });

  const mid = params.scope('mid');
  const middle = {
    res0: createResBlock(mid.scope('res0'), channels, channels, timeChannels, groups),
    attention: createAttention(mid.scope('attn'), channels, numHeads, groups),
    res1: createResBlock(mid.scope('res1'), channels, channels, timeChannels, groups),
  };

  // Decoder: each res block concatenates one encoder output (popped in reverse order).
  const up: Step[] = [];
  for (let level = channelMults.length - 1; level >= 0; level--) {
    const scope = params.scope(`up${level}`);
    for (let i = 0; i <= numResBlocks; i++) {
      const out = channelMults[level]! * base;
      const res = createResBlock(
        scope.scope(`res${i}`),
        channels + skipChannels.pop()!,
        out,
        timeChannels,
        groups,
      );
      channels = out;
      const attention = attentionAt(level)
        ? createAttention(scope.scope(`attn${i}`), channels, numHeads, groups)
        : undefined;
      up.push({ kind: 'res', res, attention });
    }
    if (level > 0) {
      up.push({
        kind: 'up',
        conv: createConv2d(scope.scope('upsample'), {
          inChannels: channels,
          outChannels: channels,
          kernelSize: 3,
          init: GLOROT,
        }),
      });
    }
  }
  const outNorm = createGroupNorm(params.scope('out').scope('norm'), { channels, groups });
  const outConv = createConv2d(params.scope('out').scope('conv'), {
    inChannels: channels,
    outChannels: frozen.imageChannels,
    kernelSize: 3,
    init: ZEROS,
  });

  const runStep = (x: tf.Tensor4D, timeAct: tf.Tensor2D, step: Step): tf.Tensor4D => {
    switch (step.kind) {
      case 'res': {
        const h = resBlock(x, timeAct, step.res);
        return step.attention ? attention(h, step.attention) : h;
      }
      case 'down':
        return conv2d(x, step.conv);
      case 'up':
        return conv2d(upsample2x(x), step.conv);
    }
  };

  const levels = channelMults.length;
  const forward = (x: tf.Tensor4D, timesteps: ArrayLike<number>): tf.Tensor4D => {
    const [n, height, width, c] = x.shape;
    if (c !== frozen.imageChannels)
      throw new Error(`diffusion U-Net: ${c} channels, expected ${frozen.imageChannels}`);
    if (height % 2 ** (levels - 1) !== 0 || width % 2 ** (levels - 1) !== 0) {
      throw new Error(`diffusion U-Net: ${height}×${width} is not divisible by 2^${levels - 1}`);
    }
    if (timesteps.length !== n)
      throw new Error(`diffusion U-Net: ${timesteps.length} timesteps for ${n} images`);
    const embedding = tf.tensor2d(timestepEmbedding(timesteps, base), [n, base]);
    const timeAct = silu(dense(silu(dense(embedding, time0)), time1));
    let h = conv2d(x, input);
    const skips: tf.Tensor4D[] = [h];
    for (const step of down) {
      h = runStep(h, timeAct, step);
      skips.push(h);
    }
    h = resBlock(h, timeAct, middle.res0);
    h = attention(h, middle.attention);
    h = resBlock(h, timeAct, middle.res1);
    for (const step of up) {
      if (step.kind === 'res') h = tf.concat([h, skips.pop()!], 3);
      h = runStep(h, timeAct, step);
    }
    return conv2d(silu(fastGroupNorm(h, outNorm)), outConv);
  };

  return {
    architecture: { name: DIFFUSION_UNET_NAME, config: frozen as unknown as Record<string, unknown> },
    variables: params.variables,
    config: frozen,
    forward,
    dispose: () => disposeVariables(params.variables),
  };
}
