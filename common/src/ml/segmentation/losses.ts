// nnU-Net's segmentation loss: soft Dice + cross-entropy from logits, with deep supervision against labels
// downsampled by nearest neighbour. Labels are canonical class maps [N, H, W] with values 0..3 (background,
// NCR, ED, ET); they are one-hot encoded here.
import * as tf from '@tensorflow/tfjs';

import { SEGMENTATION_CLASSES } from '../model.js';

export interface SegmentationLossOptions {
  /** Default 1 (nnU-Net's DC_and_CE_loss). */
  diceWeight?: number;
  /** Default 1. */
  crossEntropyWeight?: number;
  /** Added to Dice's numerator and denominator; default 1e-5 (nnU-Net v2). */
  smooth?: number;
  /** Default false: Dice over the foreground classes only (nnU-Net's do_bg=False). */
  includeBackground?: boolean;
  /** Default true: one Dice per class over the whole batch, not per sample (nnU-Net's batch_dice for 2-D). */
  batchDice?: boolean;
}

/** Labels as a one-hot float map [N, H, W, classes]; accepts int32 or integer-valued float32 class maps. */
export function oneHotLabels(labels: tf.Tensor3D, classes = SEGMENTATION_CLASSES): tf.Tensor4D {
  return tf.tidy(() => {
    const indices = labels.dtype === 'int32' ? labels : tf.cast(tf.round(labels), 'int32');
    // Not oneHot(..., 'float32'): tfjs-wasm 4.22 writes int32 bits into the float buffer (1 reads as
    // 1.4e-45).
    return tf.cast(tf.oneHot(indices, classes), 'float32') as tf.Tensor4D;
  });
}

/** Mean over pixels of -log softmax(logits)[label]. */
export function crossEntropyFromLogits(logits: tf.Tensor4D, oneHot: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)), 3))) as tf.Scalar);
}

/**
 * 1 - mean soft Dice over classes (nnU-Net's MemoryEfficientSoftDiceLoss, whose -Dice is offset by 1 here so
 * a perfect prediction scores 0; the gradient is the same):
 * Dice_c = (2·Σ p·y + smooth) / max(Σ p + Σ y + smooth, 1e-8), sums over pixels (and the batch).
 */
export function softDiceLoss(
  probabilities: tf.Tensor4D,
  oneHot: tf.Tensor4D,
  options: SegmentationLossOptions = {},
): tf.Scalar {
  const smooth = options.smooth ?? 1e-5;
  const axes = (options.batchDice ?? true) ? [0, 1, 2] : [1, 2];
  return tf.tidy(() => {
    let p: tf.Tensor = probabilities;
    let y: tf.Tensor = oneHot;
    if (!(options.includeBackground ?? false)) {
      const classes = probabilities.shape[3];
      p = tf.slice(p, [0, 0, 0, 1], [-1, -1, -1, classes - 1]);
      y = tf.slice(y, [0, 0, 0, 1], [-1, -1, -1, classes - 1]);
    }
    const intersection = tf.sum(tf.mul(p, y), axes);
    const denominator = tf.maximum(tf.add(tf.add(tf.sum(p, axes), tf.sum(y, axes)), smooth), 1e-8);
    const dice = tf.div(tf.add(tf.mul(intersection, 2), smooth), denominator);
    return tf.sub(1, tf.mean(dice)) as tf.Scalar;
  });
}

/** Dice + CE of one logits map against a one-hot map of the same size. */
export function diceCrossEntropyLoss(
  logits: tf.Tensor4D,
  oneHot: tf.Tensor4D,
  options: SegmentationLossOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const logProbabilities = tf.logSoftmax(logits);
    const crossEntropy = tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logProbabilities), 3)));
    const dice = softDiceLoss(tf.exp(logProbabilities), oneHot, options);
    return tf.add(
      tf.mul(crossEntropy, options.crossEntropyWeight ?? 1),
      tf.mul(dice, options.diceWeight ?? 1),
    ) as tf.Scalar;
  });
}

/**
 * nnU-Net's deep-supervision weights for the outputs a model returns (full resolution first): 1, 1/2, 1/4,
 * ... normalised to sum 1. nnU-Net also gives its lowest decoder output weight 0; our segmenters do not build
 * that output at all, so every output passed here counts.
 */
export function deepSupervisionWeights(outputCount: number): number[] {
  if (!Number.isInteger(outputCount) || outputCount < 1) {
    throw new Error(`deepSupervisionWeights: need at least one output, got ${outputCount}`);
  }
  const raw = Array.from({ length: outputCount }, (_, i) => 1 / 2 ** i);
  const total = raw.reduce((a, b) => a + b, 0);
  return raw.map((w) => w / total);
}

/**
 * Class map downsampled by an integer factor, nearest neighbour: pixel (i, j) takes source (f·i + f/2, f·j +
 * f/2), as PyTorch's interpolate(mode='nearest-exact') that nnU-Net v2 uses (for f = 1 the map itself).
 */
export function downsampleLabels(labels: tf.Tensor3D, factor: number): tf.Tensor3D {
  if (!Number.isInteger(factor) || factor < 1) throw new Error(`downsampleLabels: bad factor ${factor}`);
  if (factor === 1) return labels.clone();
  const [n, h, w] = labels.shape;
  if (h % factor !== 0 || w % factor !== 0) {
    throw new Error(`downsampleLabels: ${h}×${w} is not divisible by ${factor}`);
  }
  const offset = Math.floor(factor / 2);
  // Reshape + slice rather than stridedSlice: tfjs-wasm 4.22's StridedSlice returns int32 data typed float32.
  return tf.tidy(() => {
    const blocks = tf.reshape(labels, [n, h / factor, factor, w / factor, factor]);
    const picked = tf.slice(blocks, [0, 0, offset, 0, offset], [n, h / factor, 1, w / factor, 1]);
    return tf.reshape(picked, [n, h / factor, w / factor]);
  });
}

/**
 * The training loss of a segmenter's outputs (full resolution first, then deep-supervision outputs at 1/2,
 * 1/4, ...): Σ_k weight_k · (Dice + CE)(outputs[k], labels downsampled to outputs[k]'s size).
 */
export function segmentationLoss(
  outputs: readonly tf.Tensor4D[],
  labels: tf.Tensor3D,
  options: SegmentationLossOptions = {},
): tf.Scalar {
  const weights = deepSupervisionWeights(outputs.length);
  const [, height, width] = labels.shape;
  return tf.tidy(() => {
    const terms = outputs.map((logits, k) => {
      const [, h, w] = logits.shape;
      const factor = height / h;
      if (!Number.isInteger(factor) || width / w !== factor) {
        throw new Error(
          `segmentationLoss: output ${k} is ${h}×${w}, not an integer fraction of ${height}×${width}`,
        );
      }
      const target = oneHotLabels(factor === 1 ? labels : downsampleLabels(labels, factor));
      return tf.mul(diceCrossEntropyLoss(logits, target, options), weights[k]!);
    });
    return tf.addN(terms) as tf.Scalar;
  });
}
