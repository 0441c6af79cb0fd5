// GroupNorm with a hand-written gradient: the same maths as the layer kit's groupNorm (per sample over H, W
// and each group of consecutive channels, then the per-channel affine), but every reduction is one
// per-channel sum over H, W (channelSums: an XNNPACK average pool, then a tiny [N, C] → [N, G] sum), and the
// backward pass is a closed form on those sums instead of the autodiff chain through tf.moments on a rank-5
// reshape (whose Sum kernels transpose first on wasm). See README.md for the measured effect.
//
//   forward:  μ_g = mean(x), xc = x − μ_g, σ_g² = mean(xc²), r = 1/√(σ² + ε), y = γ r xc + β
//   backward: with A_c = Σ_hw dy, B_c = Σ_hw dy·xc (per sample and channel), S1_g = Σ_{c∈g} γ_c A_c,
//             S2_g = Σ_{c∈g} γ_c B_c and M = H·W·C/G:
//             dx = dy · γ r − r S1/M − xc · r³ S2/M,   dγ_c = Σ_n r B_c,   dβ_c = Σ_n A_c
import * as tf from '@tensorflow/tfjs';

import type { GroupNormLayer } from '../../layers/index.js';
import { channelSums } from './fast-ops.js';

/** [N, G] → [N, C]: each group's value repeated over its C/G channels. */
function perChannel(values: tf.Tensor2D, channels: number): tf.Tensor2D {
  const [n, groups] = values.shape;
  if (groups === channels) return values;
  const repeated = tf.mul(tf.reshape(values, [n, groups, 1]), tf.ones([1, 1, channels / groups]));
  return tf.reshape(repeated, [n, channels]);
}

/** [N, C] → [N, G]: sums over each group's channels. */
function perGroup(values: tf.Tensor2D, groups: number): tf.Tensor2D {
  const [n, channels] = values.shape;
  if (groups === channels) return values;
  return tf.sum(tf.reshape(values, [n, groups, channels / groups]), 2);
}

function asBroadcast(values: tf.Tensor2D): tf.Tensor4D {
  const [n, c] = values.shape;
  return tf.reshape(values, [n, 1, 1, c]);
}

/** GroupNorm of x [N, H, W, C] with the layer's γ and β (both required). Call inside tf.tidy. */
export function fastGroupNorm(x: tf.Tensor4D, layer: GroupNormLayer): tf.Tensor4D {
  if (!layer.gamma || !layer.beta) throw new Error('fastGroupNorm: the layer must be affine');
  const [, h, w, c] = x.shape;
  const groups = layer.groups;
  const count = (h * w * c) / groups;
  const epsilon = layer.epsilon;
  const op = tf.customGrad((...args: (tf.Tensor | ((tensors: tf.Tensor[]) => void))[]) => {
    const [input, gamma, beta] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D];
    const save = args[3] as (tensors: tf.Tensor[]) => void;
    const mean = tf.div(perGroup(channelSums(input), groups), count) as tf.Tensor2D;
    const centred: tf.Tensor4D = tf.sub(input, asBroadcast(perChannel(mean, c)));
    const variance = tf.div(perGroup(channelSums(tf.square(centred)), groups), count);
    const rstd = tf.rsqrt(tf.add(variance, epsilon)) as tf.Tensor2D;
    const rstdC = perChannel(rstd, c);
    const value = tf.add(tf.mul(centred, asBroadcast(tf.mul(rstdC, gamma))), beta) as tf.Tensor4D;
    save([centred, rstd, gamma]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xc, r, g] = saved as [tf.Tensor4D, tf.Tensor2D, tf.Tensor1D];
        const a = channelSums(dy as tf.Tensor4D);
        const b = channelSums(tf.mul(dy, xc) as tf.Tensor4D);
        const s1 = perGroup(tf.mul(a, g), groups);
        const s2 = perGroup(tf.mul(b, g), groups);
        const k1: tf.Tensor2D = tf.mul(perChannel(r, c), g);
        const k2 = perChannel(tf.neg(tf.div(tf.mul(tf.pow(r, 3), s2), count)) as tf.Tensor2D, c);
        const k3 = perChannel(tf.neg(tf.div(tf.mul(r, s1), count)) as tf.Tensor2D, c);
        const dx = tf.add(tf.add(tf.mul(dy, asBroadcast(k1)), tf.mul(xc, asBroadcast(k2))), asBroadcast(k3));
        const dGamma = tf.sum(tf.mul(perChannel(r, c), b), 0);
        const dBeta = tf.sum(a, 0);
        return [dx, dGamma, dBeta];
      },
    };
  });
  return op(x, layer.gamma, layer.beta) as tf.Tensor4D;
}
