// StyleGAN2's residual discriminator (networks_stylegan2.Discriminator, architecture 'resnet'), used by StyleGAN 2
// and 3: fromRGB (1×1) at full resolution, then per resolution a block
//   main: conv 3×3 → lrelu; blur [1,3,3,1] → conv 3×3 stride 2 → lrelu          (· √½)
//   skip: blur + ×½ → conv 1×1 (no bias)                                       (· √½)
// down to 4×4, then the epilogue: minibatch stddev → conv 3×3 → dense → dense → one logit.
// Channels per resolution r: min(channelBase / r, channelMax). All resampling uses the slice-based upfirdn (no
// depthwise convs, no resize ops), so the R1 penalty can differentiate the input gradient once more.
import * as tf from '@tensorflow/tfjs';

import type { ParamFactory } from '../../layers/index.js';
import {
  createEqualizedConv2d,
  createEqualizedDense,
  equalizedBias,
  equalizedConv2d,
  equalizedDense,
  equalizedKernel,
  leakyReluGain,
  minibatchStddev,
  type EqualizedConv2dLayer,
  type EqualizedDenseLayer,
} from '../gan/layers.js';
import { BINOMIAL_FILTER, downsample2d, upfirdn2d } from './upfirdn.js';

export interface ResidualDiscriminatorSpec {
  resolution: number;
  imageChannels: number;
  channelBase: number;
  channelMax: number;
  /** Minibatch-stddev group size (StyleGAN2: 4) and number of stddev channels (1). */
  mbstdGroupSize: number;
  mbstdChannels: number;
}

interface DiscriminatorBlock {
  resolution: number;
  fromRgb?: EqualizedConv2dLayer;
  conv0: EqualizedConv2dLayer;
  conv1: EqualizedConv2dLayer;
  skip: EqualizedConv2dLayer;
}

export interface ResidualDiscriminator {
  spec: ResidualDiscriminatorSpec;
  blocks: DiscriminatorBlock[];
  epilogue: { conv: EqualizedConv2dLayer; fc: EqualizedDenseLayer; out: EqualizedDenseLayer };
}

/** log2 of a power-of-two resolution ≥ 4, or throws. */
export function resolutionLog2(resolution: number, who: string): number {
  const log2 = Math.log2(resolution);
  if (!Number.isInteger(log2) || log2 < 2) {
    throw new Error(`${who}: resolution must be a power of two ≥ 4, got ${resolution}`);
  }
  return log2;
}

/** StyleGAN2's channels_dict: min(channelBase / r, channelMax) feature maps at resolution r. */
export function channelsAt(resolution: number, channelBase: number, channelMax: number): number {
  return Math.max(1, Math.min(Math.floor(channelBase / resolution), channelMax));
}

export function createResidualDiscriminator(
  params: ParamFactory,
  spec: ResidualDiscriminatorSpec,
): ResidualDiscriminator {
  const log2 = resolutionLog2(spec.resolution, 'discriminator');
  const ch = (r: number) => channelsAt(r, spec.channelBase, spec.channelMax);
  const blocks: DiscriminatorBlock[] = [];
  for (let l = log2; l >= 3; l--) {
    const r = 2 ** l;
    const scope = params.scope(`b${r}`);
    const tmp = ch(r);
    const out = ch(r / 2);
    blocks.push({
      resolution: r,
      fromRgb:
        r === spec.resolution
          ? createEqualizedConv2d(scope.scope('fromrgb'), {
              inChannels: spec.imageChannels,
              outChannels: tmp,
              kernelSize: 1,
            })
          : undefined,
      conv0: createEqualizedConv2d(scope.scope('conv0'), {
        inChannels: tmp,
        outChannels: tmp,
        kernelSize: 3,
      }),
      conv1: createEqualizedConv2d(scope.scope('conv1'), {
        inChannels: tmp,
        outChannels: out,
        kernelSize: 3,
      }),
      skip: createEqualizedConv2d(scope.scope('skip'), {
        inChannels: tmp,
        outChannels: out,
        kernelSize: 1,
        bias: false,
      }),
    });
  }
  const c4 = ch(4);
  const b4 = params.scope('b4');
  return {
    spec,
    blocks,
    epilogue: {
      conv: createEqualizedConv2d(b4.scope('conv'), {
        inChannels: c4 + spec.mbstdChannels,
        outChannels: c4,
        kernelSize: 3,
      }),
      fc: createEqualizedDense(b4.scope('fc'), { inFeatures: c4 * 16, outFeatures: c4 }),
      out: createEqualizedDense(b4.scope('out'), { inFeatures: c4, outFeatures: 1 }),
    },
  };
}

/** blur (padding 2) then a 3×3 stride-2 conv: StyleGAN2's conv2d_resample with down = 2. */
function downConv(x: tf.Tensor4D, layer: EqualizedConv2dLayer): tf.Tensor4D {
  const blurred = upfirdn2d(x, BINOMIAL_FILTER, { padding: [2, 2, 2, 2] });
  const y = tf.conv2d(blurred, equalizedKernel(layer) as tf.Tensor4D, 2, 'valid');
  const bias = equalizedBias(layer);
  return bias ? tf.add(y, bias) : y;
}

/** images [N, R, R, C] -> logits [N]. */
export function discriminate(d: ResidualDiscriminator, images: tf.Tensor4D): tf.Tensor1D {
  const { resolution, imageChannels } = d.spec;
  const [n, h, w, c] = images.shape;
  if (h !== resolution || w !== resolution || c !== imageChannels) {
    throw new Error(
      `discriminator: expected [N, ${resolution}, ${resolution}, ${imageChannels}], got [${images.shape}]`,
    );
  }
  let x: tf.Tensor4D = images;
  for (const block of d.blocks) {
    if (block.fromRgb) x = leakyReluGain(equalizedConv2d(x, block.fromRgb));
    const skip = tf.mul(equalizedConv2d(downsample2d(x), block.skip), Math.SQRT1_2) as tf.Tensor4D;
    const main = leakyReluGain(equalizedConv2d(x, block.conv0));
    const down = leakyReluGain(downConv(main, block.conv1), 0.2, Math.SQRT2 * Math.SQRT1_2);
    x = tf.add(skip, down);
  }
  const { conv, fc, out } = d.epilogue;
  x = minibatchStddev(x, d.spec.mbstdGroupSize, d.spec.mbstdChannels);
  x = leakyReluGain(equalizedConv2d(x, conv));
  const flat = leakyReluGain(equalizedDense(tf.reshape(x, [n, -1]) as tf.Tensor2D, fc));
  return tf.reshape(equalizedDense(flat, out), [n]);
}
