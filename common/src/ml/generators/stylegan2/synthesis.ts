// StyleGAN2's synthesis network, 'skip' architecture (networks_stylegan2.SynthesisNetwork): a learned 4×4
// constant, then per resolution r = 4, 8, ..., R a block of modulated 3×3 convs (the first of each block above 4
// upsamples: stride-2 transposed conv + [1,3,3,1] blur), per-pixel noise with a learned strength, bias and
// lrelu·√2; every block has a toRGB (modulated 1×1 conv, no demodulation) whose output is added to the
// upsampled image of the blocks before it. Style inputs (num_ws = 2·log2 R − 2): block r's conv layers take
// consecutive ws and its toRGB shares the w of the next block's first conv.
import * as tf from '@tensorflow/tfjs';

import type { ParamFactory } from '../../layers/index.js';
import {
  createEqualizedConv2d,
  createEqualizedDense,
  equalizedBias,
  equalizedDense,
  leakyReluGain,
  type EqualizedConv2dLayer,
  type EqualizedDenseLayer,
} from '../gan/layers.js';
import { channelsAt, resolutionLog2 } from './discriminator.js';
import { modulatedConv2d, type ModConvImpl } from './modulated-conv.js';
import { noiseSeedFor } from './noise.js';
import { BINOMIAL_FILTER, upfirdn2d, upsample2d } from './upfirdn.js';

export interface SynthesisSpec {
  resolution: number;
  imageChannels: number;
  wDim: number;
  channelBase: number;
  channelMax: number;
}

export interface SynthesisLayer {
  /** index among the conv layers (noise seeds) */
  index: number;
  resolution: number;
  up: 1 | 2;
  /** w -> styles [N, in] (bias initialised to 1) */
  affine: EqualizedDenseLayer;
  /** kernel [3, 3, in, out] ~ N(0, 1) used raw (demodulation normalises it), bias [out] */
  conv: EqualizedConv2dLayer;
  noiseStrength: tf.Variable;
}

export interface ToRgbLayer {
  affine: EqualizedDenseLayer;
  /** [1, 1, in, imageChannels]; styles are multiplied by its weightScale 1/√in (no demodulation) */
  conv: EqualizedConv2dLayer;
}

export interface SynthesisBlock {
  resolution: number;
  /** w index of the block's first layer */
  wIndex: number;
  conv0?: SynthesisLayer;
  conv1: SynthesisLayer;
  toRgb: ToRgbLayer;
}

export interface SynthesisNetwork {
  spec: SynthesisSpec;
  /** [4, 4, C] */
  constInput: tf.Variable;
  blocks: SynthesisBlock[];
  numWs: number;
}

export interface SynthesisRunOptions {
  /** undefined: the fixed "const" noise; a number: fresh noise from this seed. */
  noiseSeed?: number;
  modConvImpl?: ModConvImpl;
  /** Receives every block's toRGB output (before it is added to the image): for tests. */
  onToRgb?: (resolution: number, rgb: tf.Tensor4D) => void;
}

export function synthesisNumWs(resolution: number): number {
  return 2 * resolutionLog2(resolution, 'synthesis') - 2;
}

export function createSynthesis(params: ParamFactory, spec: SynthesisSpec): SynthesisNetwork {
  const log2 = resolutionLog2(spec.resolution, 'synthesis');
  const ch = (r: number) => channelsAt(r, spec.channelBase, spec.channelMax);
  const blocks: SynthesisBlock[] = [];
  let layerIndex = 0;
  let wIndex = 0;
  const layer = (scope: ParamFactory, r: number, inC: number, outC: number, up: 1 | 2): SynthesisLayer => ({
    index: layerIndex++,
    resolution: r,
    up,
    affine: createEqualizedDense(scope.scope('affine'), {
      inFeatures: spec.wDim,
      outFeatures: inC,
      biasInit: 1,
    }),
    conv: createEqualizedConv2d(scope, { inChannels: inC, outChannels: outC, kernelSize: 3 }),
    noiseStrength: scope.variable('noise_strength', [], { kind: 'zeros' }),
  });
  const toRgb = (scope: ParamFactory, inC: number): ToRgbLayer => ({
    affine: createEqualizedDense(scope.scope('affine'), {
      inFeatures: spec.wDim,
      outFeatures: inC,
      biasInit: 1,
    }),
    conv: createEqualizedConv2d(scope, { inChannels: inC, outChannels: spec.imageChannels, kernelSize: 1 }),
  });
  const constInput = params.scope('b4').variable('const', [4, 4, ch(4)], { kind: 'normal', std: 1 });
  for (let l = 2; l <= log2; l++) {
    const r = 2 ** l;
    const scope = params.scope(`b${r}`);
    const outC = ch(r);
    const block: SynthesisBlock = {
      resolution: r,
      wIndex,
      conv0: r === 4 ? undefined : layer(scope.scope('conv0'), r, ch(r / 2), outC, 2),
      conv1: layer(scope.scope('conv1'), r, outC, outC, 1),
      toRgb: toRgb(scope.scope('torgb'), outC),
    };
    wIndex += block.conv0 ? 2 : 1;
    blocks.push(block);
  }
  return { spec, constInput, blocks, numWs: wIndex + 1 };
}

function noiseFor(layer: SynthesisLayer, n: number, noiseSeed: number | undefined): tf.Tensor4D {
  const r = layer.resolution;
  if (noiseSeed === undefined) {
    // "const" noise: one fixed realisation per layer, the same for every sample and every model (so it needs
    // no storage and survives weight loading).
    return tf.randomNormal([1, r, r, 1], 0, 1, 'float32', noiseSeedFor('stylegan2-const', layer.index));
  }
  return tf.randomNormal([n, r, r, 1], 0, 1, 'float32', noiseSeedFor(noiseSeed, layer.index));
}

function runLayer(
  x: tf.Tensor4D,
  w: tf.Tensor2D,
  layer: SynthesisLayer,
  options: SynthesisRunOptions,
): tf.Tensor4D {
  const styles = equalizedDense(w, layer.affine);
  let y = modulatedConv2d(x, layer.conv.kernel as tf.Tensor4D, styles, {
    demodulate: true,
    up: layer.up,
    padding: layer.up === 2 ? 'valid' : 'same',
    impl: options.modConvImpl,
  });
  // Transposed conv gives 2H+1; the 4-tap blur with padding 1 brings it to 2H (conv2d_resample's fast path).
  if (layer.up === 2) y = upfirdn2d(y, BINOMIAL_FILTER, { padding: [1, 1, 1, 1], gain: 4 });
  y = tf.add(y, tf.mul(noiseFor(layer, x.shape[0], options.noiseSeed), layer.noiseStrength));
  return leakyReluGain(tf.add(y, equalizedBias(layer.conv)!));
}

function runToRgb(x: tf.Tensor4D, w: tf.Tensor2D, layer: ToRgbLayer, impl?: ModConvImpl): tf.Tensor4D {
  const styles = tf.mul(equalizedDense(w, layer.affine), layer.conv.weightScale) as tf.Tensor2D;
  const y = modulatedConv2d(x, layer.conv.kernel as tf.Tensor4D, styles, { demodulate: false, impl });
  return tf.add(y, equalizedBias(layer.conv)!);
}

/** ws [N, numWs, wDim] -> images [N, R, R, imageChannels]. */
export function synthesize(
  net: SynthesisNetwork,
  ws: tf.Tensor3D,
  options: SynthesisRunOptions = {},
): tf.Tensor4D {
  const [n, numWs, wDim] = ws.shape;
  if (numWs !== net.numWs || wDim !== net.spec.wDim) {
    throw new Error(`synthesis: ws must be [N, ${net.numWs}, ${net.spec.wDim}], got [${ws.shape}]`);
  }
  const wAt = (i: number) => tf.reshape(tf.slice(ws, [0, i, 0], [n, 1, wDim]), [n, wDim]) as tf.Tensor2D;
  const c = net.constInput.shape[2]!;
  let x = tf.mul(tf.reshape(net.constInput, [1, 4, 4, c]), tf.ones([n, 1, 1, 1])) as tf.Tensor4D;
  let img: tf.Tensor4D | undefined;
  for (const block of net.blocks) {
    let wi = block.wIndex;
    if (block.conv0) x = runLayer(x, wAt(wi++), block.conv0, options);
    x = runLayer(x, wAt(wi++), block.conv1, options);
    const rgb = runToRgb(x, wAt(wi), block.toRgb, options.modConvImpl);
    options.onToRgb?.(block.resolution, rgb);
    img = img ? (tf.add(upsample2d(img), rgb) as tf.Tensor4D) : rgb;
  }
  return img!;
}
