// Minibatch standard deviation with the shared layer's semantics (gan/layers.ts minibatchStddev: group of
// minibatchGroupSize(N, groupSize) samples, sample i in group i mod (N/G), `numChannels` appended statistics),
// but spreading the statistic with a broadcast multiply instead of tf.tile. The gradient penalties differentiate
// the Tile gradient once more, which builds rank-8 broadcasts that wasm's XNNPACK refuses ("xnn_setup ... status
// 4") and silently answers with garbage/NaN; a rank-5 broadcast multiply stays within its limits.
import * as tf from '@tensorflow/tfjs';

import { minibatchGroupSize } from '../gan/layers.js';

export function minibatchStddevBroadcast(x: tf.Tensor4D, groupSize = 4, numChannels = 1): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  if (c % numChannels !== 0) {
    throw new Error(`minibatchStddev: ${c} channels do not split into ${numChannels} slices`);
  }
  const g = minibatchGroupSize(n, groupSize);
  const groups = n / g;
  const f = numChannels;
  let y: tf.Tensor = tf.reshape(x, [g, groups, h, w, f, c / f]);
  y = tf.sub(y, tf.mean(y, 0, true));
  y = tf.mean(tf.square(y), 0); // [groups, h, w, f, c/f]
  y = tf.sqrt(tf.add(y, 1e-8));
  y = tf.mean(y, [1, 2, 4]); // [groups, f]
  // Sample i = copy · groups + group gets its group's statistic at every pixel.
  const spread = tf.mul(tf.reshape(y, [1, groups, 1, 1, f]), tf.ones([g, 1, h, w, 1]));
  return tf.concat([x, tf.reshape(spread, [n, h, w, f])], 3);
}
