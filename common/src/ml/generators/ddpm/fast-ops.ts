// Reductions and bias additions with hand-written gradients, for the diffusion U-Net's hot path on wasm.
//
// tfjs-wasm reduces over non-innermost axes by transposing first, so the per-channel sums every NHWC bias
// gradient and normalisation needs (Sum over [1, 2] or [0, 1, 2]) are slow. Two XNNPACK kernels do the same
// sums 5-40x faster (measured on 8×64×64×32, median of 20: Sum[1,2] 1.6 ms vs AvgPool 0.26 ms; Sum[0,1,2] 4.4
// ms vs ones·X 0.2 ms):
//   per sample and channel (over H, W): a global average pool × H·W;
//   per channel (over N, H, W): a [1, N·H·W] × [N·H·W, C] matmul with a row of ones.
// Both are exact sums up to float32 rounding order. Call everything inside tf.tidy.
import * as tf from '@tensorflow/tfjs';

/** Σ over H, W per sample and channel: [N, H, W, C] → [N, C]. */
export function channelSums(x: tf.Tensor4D): tf.Tensor2D {
  const [n, h, w, c] = x.shape;
  if (h === 1 && w === 1) return tf.reshape(x, [n, c]);
  const mean = tf.avgPool(x, [h, w], [h, w], 'valid');
  return tf.reshape(tf.mul(mean, h * w), [n, c]);
}

/** Σ over N, H, W per channel: [N, H, W, C] → [C]. */
export function totalChannelSums(x: tf.Tensor4D): tf.Tensor1D {
  const [n, h, w, c] = x.shape;
  const rows = n * h * w;
  return tf.reshape(tf.matMul(tf.ones([1, rows]), tf.reshape(x, [rows, c])), [c]);
}

/**
 * x [N, H, W, C] + bias [C] (+ perSample [N, C], e.g. a time embedding), with gradients dx = dy,
 * d bias = totalChannelSums(dy), d perSample = channelSums(dy).
 */
export function addChannelBias(x: tf.Tensor4D, bias: tf.Tensor1D, perSample?: tf.Tensor2D): tf.Tensor4D {
  const [n, , , c] = x.shape;
  if (perSample) {
    const op = tf.customGrad((...args: (tf.Tensor | ((tensors: tf.Tensor[]) => void))[]) => {
      const [input, b, e] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor2D];
      return {
        value: tf.add(input, tf.reshape(tf.add(e, b), [n, 1, 1, c])) as tf.Tensor4D,
        gradFunc: (dy: tf.Tensor) => {
          const perSampleGrad = channelSums(dy as tf.Tensor4D);
          return [tf.clone(dy), tf.sum(perSampleGrad, 0), perSampleGrad];
        },
      };
    });
    return op(x, bias, perSample) as tf.Tensor4D;
  }
  const op = tf.customGrad((...args: (tf.Tensor | ((tensors: tf.Tensor[]) => void))[]) => {
    const [input, b] = args as [tf.Tensor4D, tf.Tensor1D];
    return {
      value: tf.add(input, b) as tf.Tensor4D,
      gradFunc: (dy: tf.Tensor) => [tf.clone(dy), totalChannelSums(dy as tf.Tensor4D)],
    };
  });
  return op(x, bias) as tf.Tensor4D;
}
