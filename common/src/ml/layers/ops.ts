// Pure layer ops over NHWC tensors. A layer is a plain object holding its variables and static settings,
// made once by its `create*` function; the op is a function of (input, layer). Call the ops inside tf.tidy.
import * as tf from '@tensorflow/tfjs';

import { HE, ONES, ZEROS, type Initializer, type ParamFactory } from './params.js';

export type Padding = 'same' | 'valid';

// -----------------------------------------------------------------------------------------------------------
// Convolutions

export interface Conv2dLayer {
  /** [kh, kw, in, out] */
  kernel: tf.Variable;
  bias?: tf.Variable;
  strides: number;
  padding: Padding;
}

export interface Conv2dSpec {
  inChannels: number;
  outChannels: number;
  kernelSize: number;
  strides?: number;
  padding?: Padding;
  /** Default true. Leave it off before a normalisation, which removes any per-channel constant anyway. */
  bias?: boolean;
  init?: Initializer;
}

export function createConv2d(params: ParamFactory, spec: Conv2dSpec): Conv2dLayer {
  const { inChannels, outChannels, kernelSize } = spec;
  return {
    kernel: params.variable('kernel', [kernelSize, kernelSize, inChannels, outChannels], spec.init ?? HE),
    bias: spec.bias === false ? undefined : params.variable('bias', [outChannels], ZEROS),
    strides: spec.strides ?? 1,
    padding: spec.padding ?? 'same',
  };
}

export function conv2d(x: tf.Tensor4D, layer: Conv2dLayer): tf.Tensor4D {
  const { kernel, bias, strides, padding } = layer;
  if (!bias) return tf.conv2d(x, kernel as tf.Tensor4D, strides, padding);
  return tf.fused.conv2d({ x, filter: kernel as tf.Tensor4D, strides, pad: padding, bias });
}

export interface Conv2dTransposeLayer {
  /** [kh, kw, out, in]: tf.conv2dTranspose's filter layout */
  kernel: tf.Variable;
  bias?: tf.Variable;
  strides: number;
}

export interface Conv2dTransposeSpec {
  inChannels: number;
  outChannels: number;
  kernelSize: number;
  strides: number;
  bias?: boolean;
  init?: Initializer;
}

export function createConv2dTranspose(params: ParamFactory, spec: Conv2dTransposeSpec): Conv2dTransposeLayer {
  const { inChannels, outChannels, kernelSize: k, strides } = spec;
  // The kernel's axes are [k, k, out, in], so the default fans (last axis = output) would be swapped.
  const fans = { fanIn: inChannels * k * k, fanOut: outChannels * k * k };
  return {
    kernel: params.variable('kernel', [k, k, outChannels, inChannels], spec.init ?? HE, fans),
    bias: spec.bias === false ? undefined : params.variable('bias', [outChannels], ZEROS),
    strides,
  };
}

/**
 * Transposed convolution, 'same' padding: [N, H, W, in] -> [N, H·s, W·s, out]. (For kernel = stride a matmul
 * plus pixel shuffle is the same maths; on wasm with the fedsynth kernels it was no faster, so this stays.)
 */
export function conv2dTranspose(x: tf.Tensor4D, layer: Conv2dTransposeLayer): tf.Tensor4D {
  const [n, h, w] = x.shape;
  const { kernel, bias, strides } = layer;
  const outShape: [number, number, number, number] = [n, h * strides, w * strides, kernel.shape[2]!];
  const y = tf.conv2dTranspose(x, kernel as tf.Tensor4D, outShape, strides, 'same');
  return bias ? tf.add(y, bias) : y;
}

// -----------------------------------------------------------------------------------------------------------
// Dense

export interface DenseLayer {
  /** [in, out] */
  kernel: tf.Variable;
  bias?: tf.Variable;
}

export interface DenseSpec {
  inFeatures: number;
  outFeatures: number;
  bias?: boolean;
  init?: Initializer;
}

export function createDense(params: ParamFactory, spec: DenseSpec): DenseLayer {
  return {
    kernel: params.variable('kernel', [spec.inFeatures, spec.outFeatures], spec.init ?? HE),
    bias: spec.bias === false ? undefined : params.variable('bias', [spec.outFeatures], ZEROS),
  };
}

/** x [..., in] -> [..., out]; leading axes are folded into one matmul. */
export function dense<T extends tf.Tensor>(x: T, layer: DenseLayer): T {
  const inFeatures = x.shape[x.rank - 1]!;
  const outFeatures = layer.kernel.shape[1]!;
  const rows = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D;
  const kernel = layer.kernel as tf.Tensor2D;
  const y = layer.bias ? tf.fused.matMul({ a: rows, b: kernel, bias: layer.bias }) : tf.matMul(rows, kernel);
  return tf.reshape(y, [...x.shape.slice(0, -1), outFeatures]) as T;
}

// -----------------------------------------------------------------------------------------------------------
// Normalisation

export interface NormLayer {
  /** per-channel scale, absent when not affine */
  gamma?: tf.Variable;
  beta?: tf.Variable;
  epsilon: number;
}

export interface GroupNormLayer extends NormLayer {
  groups: number;
}

export interface NormSpec {
  channels: number;
  /** Default true: a learned per-channel scale and offset after normalising. */
  affine?: boolean;
  /** Default 1e-5 (PyTorch's). */
  epsilon?: number;
}

export function createNorm(params: ParamFactory, spec: NormSpec): NormLayer {
  const affine = spec.affine ?? true;
  return {
    gamma: affine ? params.variable('gamma', [spec.channels], ONES) : undefined,
    beta: affine ? params.variable('beta', [spec.channels], ZEROS) : undefined,
    epsilon: spec.epsilon ?? 1e-5,
  };
}

export function createGroupNorm(params: ParamFactory, spec: NormSpec & { groups: number }): GroupNormLayer {
  if (spec.channels % spec.groups !== 0) {
    throw new Error(`group norm: ${spec.channels} channels do not split into ${spec.groups} groups`);
  }
  return { ...createNorm(params, spec), groups: spec.groups };
}

function normalise<T extends tf.Tensor>(x: T, axes: number[], layer: NormLayer): T {
  const { mean, variance } = tf.moments(x, axes, true);
  return tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, layer.epsilon))) as T;
}

function applyAffine<T extends tf.Tensor>(x: T, layer: NormLayer): T {
  let y: tf.Tensor = x;
  if (layer.gamma) y = tf.mul(y, layer.gamma);
  if (layer.beta) y = tf.add(y, layer.beta);
  return y as T;
}

/** Per sample and channel over H, W (nnU-Net's InstanceNorm2d with affine). */
export function instanceNorm(x: tf.Tensor4D, layer: NormLayer): tf.Tensor4D {
  return applyAffine(normalise(x, [1, 2], layer), layer);
}

/** Over the last axis (the channels of a token). */
export function layerNorm<T extends tf.Tensor>(x: T, layer: NormLayer): T {
  return applyAffine(normalise(x, [x.rank - 1], layer), layer);
}

/** Per sample over H, W and each group of consecutive channels. */
export function groupNorm(x: tf.Tensor4D, layer: GroupNormLayer): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const grouped = tf.reshape(x, [n, h, w, layer.groups, c / layer.groups]);
  const normalised = tf.reshape(normalise(grouped, [1, 2, 4], layer), [n, h, w, c]) as tf.Tensor4D;
  return applyAffine(normalised, layer);
}

// -----------------------------------------------------------------------------------------------------------
// Activations and resampling

export function leakyRelu<T extends tf.Tensor>(x: T, negativeSlope: number): T {
  return tf.leakyRelu(x, negativeSlope);
}

/** Exact GELU, x·Φ(x) = x·(1 + erf(x/√2))/2 (PyTorch's default); wasm has Erf, so no tanh approximation. */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)) as T;
}

/** Bilinear resize with half-pixel centres: PyTorch's interpolate(mode='bilinear', align_corners=False). */
export function resizeBilinear(x: tf.Tensor4D, size: readonly [number, number]): tf.Tensor4D {
  if (x.shape[1] === size[0] && x.shape[2] === size[1]) return x;
  return tf.image.resizeBilinear(x, [size[0], size[1]], false, true);
}
