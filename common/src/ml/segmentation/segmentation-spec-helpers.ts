// Shared by the segmentation specs: the wasm backend, a small learnable batch, training steps, gradients.
import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../util/rng.js';
import { selectBackend } from '../backend/index.js';
import type { Segmenter } from '../model.js';
import { segmentationLoss } from './losses.js';

/** wasm with the fedsynth training kernels (training on the pure-JS cpu backend is far too slow). */
export async function useWasm(): Promise<void> {
  await selectBackend({ prefer: 'wasm' });
}

/**
 * A batch with something to learn: per sample two discs of tumour classes in a brain-like ellipse, and four
 * channels whose intensities depend on the class, plus noise. Labels int32 [N, H, W] in 0..3.
 */
export function phantomBatch(
  seed: number,
  batch: number,
  size: number,
): { images: tf.Tensor4D; labels: tf.Tensor3D } {
  const rng = createRng(seed);
  const labels = new Int32Array(batch * size * size);
  const images = new Float32Array(batch * size * size * 4);
  const classLevels = [
    [-0.6, -0.5, -0.4, -0.6],
    [0.2, -0.2, 0.1, 0.6],
    [0.1, 0.7, 0.8, -0.1],
    [0.8, 0.3, 0.4, 0.9],
  ];
  for (let n = 0; n < batch; n++) {
    const discs = [1, 2, 3].map((label) => ({
      label,
      cy: rng.uniform(0.3, 0.7) * size,
      cx: rng.uniform(0.3, 0.7) * size,
      r: rng.uniform(0.08, 0.2) * size,
    }));
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inBrain = ((y - size / 2) / (0.45 * size)) ** 2 + ((x - size / 2) / (0.4 * size)) ** 2 < 1;
        let label = 0;
        for (const d of discs) if ((y - d.cy) ** 2 + (x - d.cx) ** 2 < d.r ** 2) label = d.label;
        const i = (n * size + y) * size + x;
        labels[i] = inBrain ? label : 0;
        for (let c = 0; c < 4; c++) {
          images[i * 4 + c] = inBrain ? classLevels[labels[i]!]![c]! + rng.normal(0, 0.1) : -1;
        }
      }
    }
  }
  return {
    images: tf.tensor4d(images, [batch, size, size, 4]),
    labels: tf.tensor3d(labels, [batch, size, size], 'int32'),
  };
}

export function variableList(model: Segmenter): tf.Variable[] {
  return Object.values(model.variables);
}

/** One optimizer step on the segmentation loss; returns the loss before the update. */
export function trainStep(
  model: Segmenter,
  optimizer: tf.Optimizer,
  images: tf.Tensor4D,
  labels: tf.Tensor3D,
): number {
  const loss = optimizer.minimize(
    () => segmentationLoss(model.forward(images, true), labels),
    true,
    variableList(model),
  );
  const value = loss!.dataSync()[0]!;
  loss!.dispose();
  return value;
}

/** Gradient norms by stable variable name; names without a gradient are missing. */
export function gradientNorms(
  model: Segmenter,
  images: tf.Tensor4D,
  labels: tf.Tensor3D,
): Map<string, number> {
  const nameOf = new Map(Object.entries(model.variables).map(([name, v]) => [v.name, name]));
  const { value, grads } = tf.variableGrads(
    () => segmentationLoss(model.forward(images, true), labels),
    variableList(model),
  );
  const norms = new Map<string, number>();
  for (const [tfName, grad] of Object.entries(grads)) {
    norms.set(
      nameOf.get(tfName)!,
      tf.tidy(() => tf.norm(grad).dataSync()[0]!),
    );
    grad.dispose();
  }
  value.dispose();
  return norms;
}

/** All variables' values, for comparing builds. */
export function snapshot(model: Segmenter): Map<string, Float32Array> {
  return new Map(
    Object.entries(model.variables).map(([name, v]) => [name, (v.dataSync() as Float32Array).slice()]),
  );
}
