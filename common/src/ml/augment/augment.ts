// Label-safe augmentation of a training batch (NHWC float images + class map), nnU-Net's 2-D recipe minus the
// intensity tricks the brief leaves out: rotation and scaling (one affine per sample; bilinear for images,
// nearest for labels), Gaussian noise, Gaussian blur, gamma, and mirroring along the left-right axis (the
// slices' x axis, NIfTI i). Labels only ever move (nearest neighbour, reversal) or become background where
// the affine leaves the field of view, so they stay in {0, 1, 2, 3}.
//
// Randomness: planAugmentation draws every decision and parameter in JS from the caller's Rng; the tensors
// then follow the plan deterministically (noise from a seed in the plan).
import * as tf from '@tensorflow/tfjs';

import { createRng, type Rng } from '../../util/rng.js';

export interface AugmentOptions {
  /** Rotation about the slice centre by an angle uniform in ±maxDegrees. */
  rotation?: { probability: number; maxDegrees: number };
  /** Zoom by a factor uniform in range (> 1 enlarges the content). */
  scaling?: { probability: number; range: readonly [number, number] };
  /** Additive N(0, v) noise per pixel, v uniform in varianceRange. */
  noise?: { probability: number; varianceRange: readonly [number, number] };
  /** Gaussian blur, σ uniform in sigmaRange; each channel of a chosen sample with perChannelProbability. */
  blur?: { probability: number; sigmaRange: readonly [number, number]; perChannelProbability?: number };
  /**
   * Gamma γ uniform in range per channel, on the channel rescaled to [0, 1] and mapped back to its range;
   * with invertProbability the image is negated around it (nnU-Net's inverted gamma).
   */
  gamma?: { probability: number; range: readonly [number, number]; invertProbability?: number };
  /** Left-right mirror. */
  mirror?: { probability: number };
  /** Image value where the affine samples outside the slice; default -1 (byte 0 after scaling to [-1, 1]). */
  fillValue?: number;
}

/** nnU-Net v2's 2-D defaults for the transforms above. */
export const NNUNET_AUGMENTATION: AugmentOptions = {
  rotation: { probability: 0.2, maxDegrees: 180 },
  scaling: { probability: 0.2, range: [0.7, 1.4] },
  noise: { probability: 0.1, varianceRange: [0, 0.1] },
  blur: { probability: 0.2, sigmaRange: [0.5, 1], perChannelProbability: 0.5 },
  gamma: { probability: 0.3, range: [0.7, 1.5] },
  mirror: { probability: 0.5 },
};

/** What happens to one sample; the neutral values mean "not applied". */
export interface SampleAugmentation {
  /** radians, 0 = none */
  rotation: number;
  /** zoom factor, 1 = none */
  scale: number;
  /** standard deviation of the added noise, 0 = none */
  noiseStd: number;
  /** σ per channel, 0 = not blurred; null = no blur at all */
  blurSigmas: number[] | null;
  /** γ per channel; null = no gamma */
  gammas: number[] | null;
  invertGamma: boolean;
  mirror: boolean;
}

export interface AugmentationPlan {
  samples: SampleAugmentation[];
  /** seed of the noise tensor */
  noiseSeed: number;
  fillValue: number;
}

export interface AugmentedBatch {
  images: tf.Tensor4D;
  /** int32 [N, H, W] */
  labels: tf.Tensor3D;
}

/**
 * Draws the plan for a batch. Consumes one draw from `rng` and derives an independent stream per transform
 * from it, so switching one transform off does not change what the others do.
 */
export function planAugmentation(
  rng: Rng,
  batchSize: number,
  channels: number,
  options: AugmentOptions,
): AugmentationPlan {
  const batchRng = createRng(rng.uint32());
  const streams = {
    rotation: batchRng.fork('rotation'),
    scaling: batchRng.fork('scaling'),
    noise: batchRng.fork('noise'),
    blur: batchRng.fork('blur'),
    gamma: batchRng.fork('gamma'),
    mirror: batchRng.fork('mirror'),
  };
  const samples: SampleAugmentation[] = [];
  for (let i = 0; i < batchSize; i++) {
    const sample: SampleAugmentation = {
      rotation: 0,
      scale: 1,
      noiseStd: 0,
      blurSigmas: null,
      gammas: null,
      invertGamma: false,
      mirror: false,
    };
    const { rotation, scaling, noise, blur, gamma, mirror } = options;
    if (rotation && streams.rotation.chance(rotation.probability)) {
      sample.rotation = (streams.rotation.uniform(-rotation.maxDegrees, rotation.maxDegrees) * Math.PI) / 180;
    }
    if (scaling && streams.scaling.chance(scaling.probability)) {
      sample.scale = streams.scaling.uniform(scaling.range[0], scaling.range[1]);
    }
    if (noise && streams.noise.chance(noise.probability)) {
      sample.noiseStd = Math.sqrt(streams.noise.uniform(noise.varianceRange[0], noise.varianceRange[1]));
    }
    if (blur && streams.blur.chance(blur.probability)) {
      const perChannel = blur.perChannelProbability ?? 1;
      sample.blurSigmas = Array.from({ length: channels }, () =>
        streams.blur.chance(perChannel) ? streams.blur.uniform(blur.sigmaRange[0], blur.sigmaRange[1]) : 0,
      );
    }
    if (gamma && streams.gamma.chance(gamma.probability)) {
      sample.invertGamma = streams.gamma.chance(gamma.invertProbability ?? 0);
      sample.gammas = Array.from({ length: channels }, () =>
        streams.gamma.uniform(gamma.range[0], gamma.range[1]),
      );
    }
    if (mirror && streams.mirror.chance(mirror.probability)) sample.mirror = true;
    samples.push(sample);
  }
  return { samples, noiseSeed: streams.noise.uint32(), fillValue: options.fillValue ?? -1 };
}

/** Applies a plan. Returns new tensors (the caller disposes them); the inputs are left as they are. */
export function applyAugmentation(
  images: tf.Tensor4D,
  labels: tf.Tensor3D,
  plan: AugmentationPlan,
): AugmentedBatch {
  const [n, h, w] = images.shape;
  if (plan.samples.length !== n || labels.shape[0] !== n || labels.shape[1] !== h || labels.shape[2] !== w) {
    const sizes = `images [${images.shape}], labels [${labels.shape}]`;
    throw new Error(`applyAugmentation: ${sizes} and a plan for ${plan.samples.length} samples do not match`);
  }
  return tf.tidy(() => {
    let x: tf.Tensor4D = images;
    // Labels travel as float [N, H, W, 1] through the image ops; every op on them only moves or zeroes
    // values.
    let y = tf.expandDims(tf.cast(labels, 'float32'), 3) as tf.Tensor4D;
    const { samples } = plan;

    if (samples.some((s) => s.rotation !== 0 || s.scale !== 1)) {
      const transforms = tf.tensor2d(
        samples.map((s) => affineRow(s.rotation, s.scale, h, w)),
        [n, 8],
      );
      x = tf.image.transform(x, transforms, 'bilinear', 'constant', plan.fillValue);
      y = tf.image.transform(y, transforms, 'nearest', 'constant', 0);
    }

    if (samples.some((s) => s.noiseStd > 0)) {
      const std = tf.tensor4d(
        samples.map((s) => s.noiseStd),
        [n, 1, 1, 1],
      );
      x = tf.add(x, tf.mul(tf.randomNormal(x.shape, 0, 1, 'float32', plan.noiseSeed), std));
    }

    if (samples.some((s) => s.blurSigmas?.some((sigma) => sigma > 0))) {
      const perSample = tf.unstack(x).map((sample, i) => {
        const sigmas = samples[i]!.blurSigmas;
        return sigmas?.some((sigma) => sigma > 0) ? gaussianBlur(sample as tf.Tensor3D, sigmas) : sample;
      });
      x = tf.stack(perSample) as tf.Tensor4D;
    }

    if (samples.some((s) => s.gammas)) x = applyGamma(x, samples);

    if (samples.some((s) => s.mirror)) {
      const flip = tf.tensor4d(
        samples.map((s) => (s.mirror ? 1 : 0)),
        [n, 1, 1, 1],
        'bool',
      );
      x = tf.where(flip, tf.reverse(x, 2), x);
      y = tf.where(flip, tf.reverse(y, 2), y);
    }

    const outLabels = tf.cast(tf.round(tf.squeeze(y, [3])), 'int32') as tf.Tensor3D;
    // A clone when nothing changed, so the caller always owns (and may dispose) what it gets.
    return { images: x === images ? tf.clone(x) : x, labels: outLabels };
  });
}

/** Plans and applies augmentation for one batch. */
export function augmentBatch(
  images: tf.Tensor4D,
  labels: tf.Tensor3D,
  rng: Rng,
  options: AugmentOptions,
): AugmentedBatch {
  return applyAugmentation(images, labels, planAugmentation(rng, images.shape[0], images.shape[3], options));
}

/** Mirrors every sample along the left-right (width) axis. */
export function mirrorLeftRight(images: tf.Tensor4D, labels: tf.Tensor3D): AugmentedBatch {
  return tf.tidy(() => ({ images: tf.reverse(images, 2), labels: tf.reverse(labels, 2) }));
}

/**
 * tf.image.transform's row [a0, a1, a2, b0, b1, b2, 0, 0], mapping an output pixel (x, y) to the input pixel
 * it samples: input = c + R(-θ)·(out - c) / s about the centre c, i.e. the content turns by θ and grows by s.
 */
export function affineRow(rotation: number, scale: number, height: number, width: number): number[] {
  const cx = (width - 1) / 2;
  const cy = (height - 1) / 2;
  const cos = Math.cos(rotation) / scale;
  const sin = Math.sin(rotation) / scale;
  const a0 = cos;
  const a1 = sin;
  const b0 = -sin;
  const b1 = cos;
  return [a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy, 0, 0];
}

/**
 * A normalised 1-D Gaussian of radius round(4σ) (scipy's gaussian_filter truncation); σ = 0 is the identity.
 */
export function gaussianTaps(sigma: number, radius: number): number[] {
  const taps = Array.from({ length: 2 * radius + 1 }, (_, i) => {
    const d = i - radius;
    if (sigma <= 0) return d === 0 ? 1 : 0;
    return Math.exp(-(d * d) / (2 * sigma * sigma));
  });
  const total = taps.reduce((a, b) => a + b, 0);
  return taps.map((t) => t / total);
}

/** Separable Gaussian blur of one [H, W, C] slice, σ per channel, mirrored borders (scipy's 'reflect'). */
function gaussianBlur(sample: tf.Tensor3D, sigmas: readonly number[]): tf.Tensor3D {
  const [h, w, c] = sample.shape;
  const radius = Math.max(1, Math.min(Math.round(4 * Math.max(...sigmas)), h - 1, w - 1));
  const taps = sigmas.map((sigma) => gaussianTaps(sigma, radius));
  const size = 2 * radius + 1;
  // Depthwise filter [k, 1, C, 1] (down the rows) with channel c's taps in column c.
  const filterValues = new Float32Array(size * c);
  for (let k = 0; k < size; k++) for (let ch = 0; ch < c; ch++) filterValues[k * c + ch] = taps[ch]![k]!;
  const vertical = tf.tensor4d(filterValues, [size, 1, c, 1]);
  const horizontal = tf.reshape(vertical, [1, size, c, 1]) as tf.Tensor4D;
  const x = tf.expandDims(sample, 0) as tf.Tensor4D;
  const padRows = tf.mirrorPad(
    x,
    [
      [0, 0],
      [radius, radius],
      [0, 0],
      [0, 0],
    ],
    'symmetric',
  );
  const blurredRows = tf.depthwiseConv2d(padRows, vertical, 1, 'valid');
  const padCols = tf.mirrorPad(
    blurredRows,
    [
      [0, 0],
      [0, 0],
      [radius, radius],
      [0, 0],
    ],
    'symmetric',
  );
  return tf.reshape(tf.depthwiseConv2d(padCols, horizontal, 1, 'valid'), [h, w, c]);
}

/** Gamma per sample and channel on the channel's own [min, max], leaving other samples bit-identical. */
function applyGamma(x: tf.Tensor4D, samples: readonly SampleAugmentation[]): tf.Tensor4D {
  const [n, , , c] = x.shape;
  const gammas = tf.tensor4d(
    samples.flatMap((s) => s.gammas ?? new Array<number>(c).fill(1)),
    [n, 1, 1, c],
  );
  const sign = tf.tensor4d(
    samples.map((s) => (s.invertGamma ? -1 : 1)),
    [n, 1, 1, 1],
  );
  const chosen = tf.tensor4d(
    samples.map((s) => (s.gammas ? 1 : 0)),
    [n, 1, 1, 1],
    'bool',
  );
  const signed = tf.mul(x, sign);
  const low = tf.min(signed, [1, 2], true);
  // nnU-Net's epsilon keeps constant channels finite.
  const range = tf.add(tf.sub(tf.max(signed, [1, 2], true), low), 1e-7);
  const unit = tf.div(tf.sub(signed, low), range);
  const curved = tf.add(tf.mul(tf.pow(unit, gammas), range), low);
  return tf.where(chosen, tf.mul(curved, sign), x) as tf.Tensor4D;
}
