// Gradient definitions that tfjs-core ships in a form too slow to train with, replaced for every backend.
//
// Tile: core's gradient slices dy once per repetition and adds the slices up, one op pair per copy. Layer
// normalisation in tf.layers tiles gamma and beta over batch x height x width, so its backward pass ran
// ~16,000 Slice+Add pairs per step for a 8x32x32 map. The gradient is a sum over the repetition axes: one
// reshape and one reduction.
import * as tf from '@tensorflow/tfjs';

interface FedsynthGradConfig extends tf.GradConfig {
  fedsynthGradient: true;
  replaced?: tf.GradConfig;
}

export function tileGradient(dy: tf.Tensor, x: tf.Tensor, reps: readonly number[]): tf.Tensor {
  // Axis i of dy has r_i·d_i entries, the r_i copies outermost. Sum the copies one axis at a time through a
  // rank-3 view [before, r_i, d_i·after]: never above rank 3, because XNNPACK (wasm) silently computes garbage
  // for binary ops on rank ≥ 7 — which the second derivative of a rank-doubling reshape would reach (R1, GP).
  let gradient = dy;
  const shape = [...dy.shape];
  x.shape.forEach((size, i) => {
    const r = reps[i] ?? 1;
    if (r <= 1) return;
    const before = shape.slice(0, i).reduce((a, b) => a * b, 1);
    const after = shape.slice(i + 1).reduce((a, b) => a * b, 1);
    gradient = tf.sum(tf.reshape(gradient, [before, r, size * after]), 1);
    shape[i] = size;
  });
  return tf.reshape(gradient, x.shape);
}

const TILE_GRADIENT: FedsynthGradConfig = {
  kernelName: 'Tile',
  inputsToSave: ['x'],
  fedsynthGradient: true,
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    const { reps } = attrs as unknown as { reps: number[] };
    if (!x || Array.isArray(dy)) throw new Error('Tile gradient: expected one saved input and one dy');
    return { x: () => tileGradient(dy, x, reps) };
  },
};

const GRADIENTS: readonly FedsynthGradConfig[] = [TILE_GRADIENT];

function isOurs(config: tf.GradConfig | undefined): config is FedsynthGradConfig {
  return (config as Partial<FedsynthGradConfig> | undefined)?.fedsynthGradient === true;
}

/** Registers the faster gradients (idempotent); returns the kernel names whose gradient is now ours. */
export function registerTrainingGradients(): string[] {
  for (const ours of GRADIENTS) {
    const current = tf.getGradient(ours.kernelName);
    if (isOurs(current)) continue;
    const config: FedsynthGradConfig = { ...ours, replaced: current };
    tf.registerGradient(config);
  }
  return GRADIENTS.map((g) => g.kernelName);
}

/** Puts tfjs-core's own gradients back (used to compare against them). */
export function unregisterTrainingGradients(): void {
  for (const ours of GRADIENTS) {
    const current = tf.getGradient(ours.kernelName);
    if (!isOurs(current)) continue;
    tf.unregisterGradient(ours.kernelName);
    if (current.replaced) tf.registerGradient(current.replaced);
  }
}
