// StyleGAN3's synthesis network (config T): Fourier-feature input, numLayers layers of modulated 3×3 conv
// ('full' padding, so the map grows by 2 and the filters' padding brings it to the planned size) followed by the
// filtered leaky ReLU, and a final toRGB (modulated 1×1, no demodulation, linear); no noise inputs; the output is
// scaled by outputScale (0.25). Each layer tracks the EMA of its input's mean square (magnitude_ema) and divides
// its input by its square root (input_gain), which keeps the activations' magnitude stable without
// normalisation layers.
import * as tf from '@tensorflow/tfjs';

import type { ParamFactory } from '../../layers/index.js';
import {
  createEqualizedConv2d,
  createEqualizedDense,
  equalizedBias,
  equalizedDense,
  type EqualizedConv2dLayer,
  type EqualizedDenseLayer,
} from '../gan/layers.js';
import { modulatedConv2d, type ModConvImpl } from '../stylegan2/modulated-conv.js';
import { FirFilterCache, type FirImpl } from '../stylegan2/upfirdn.js';
import { filteredLeakyRelu } from './filtered-lrelu.js';
import type { StyleGan3LayerPlan, StyleGan3Plan } from './filters.js';
import { createFourierInput, runFourierInput, type FourierInput } from './fourier.js';

export interface StyleGan3SynthesisSpec {
  wDim: number;
  plan: StyleGan3Plan;
  outputScale: number;
  /** EMA decay of each layer's input magnitude per training-mode call (0.5^(batch / 20k)). */
  magnitudeEmaBeta: number;
  fourierSeed: number | string;
}

export interface StyleGan3Layer {
  plan: StyleGan3LayerPlan;
  /** w -> styles [N, in] (bias initialised to 1) */
  affine: EqualizedDenseLayer;
  /** kernel [k, k, in, out] ~ N(0, 1), bias [out] */
  conv: EqualizedConv2dLayer;
  /** scalar EMA of mean(x²) of the input, starts at 1; no gradient, updated by assignment in training mode */
  magnitudeEma: tf.Variable;
}

export interface StyleGan3Synthesis {
  spec: StyleGan3SynthesisSpec;
  input: FourierInput;
  layers: StyleGan3Layer[];
  numWs: number;
  /** The depthwise FIR filters (constants), created on first use; dispose with the model. */
  filterCache: FirFilterCache;
}

export interface StyleGan3RunOptions {
  training?: boolean;
  modConvImpl?: ModConvImpl;
  /** FIR implementation of the filtered nonlinearity (default 'depthwise': faster; first order only). */
  firImpl?: FirImpl;
}

export function createStyleGan3Synthesis(
  params: ParamFactory,
  spec: StyleGan3SynthesisSpec,
): StyleGan3Synthesis {
  const { plan } = spec;
  const input = createFourierInput(params.scope('input'), {
    wDim: spec.wDim,
    channels: plan.input.channels,
    size: plan.input.size,
    samplingRate: plan.input.samplingRate,
    bandwidth: plan.input.bandwidth,
    seed: spec.fourierSeed,
  });
  const layers = plan.layers.map((layerPlan) => {
    const scope = params.scope(layerPlan.name);
    return {
      plan: layerPlan,
      affine: createEqualizedDense(scope.scope('affine'), {
        inFeatures: spec.wDim,
        outFeatures: layerPlan.inChannels,
        biasInit: 1,
      }),
      conv: createEqualizedConv2d(scope, {
        inChannels: layerPlan.inChannels,
        outChannels: layerPlan.outChannels,
        kernelSize: layerPlan.convKernel,
      }),
      magnitudeEma: scope.variable('magnitude_ema', [], { kind: 'ones' }),
    };
  });
  return { spec, input, layers, numWs: layers.length + 1, filterCache: new FirFilterCache() };
}

/** The identity with a zero gradient (PyTorch's .detach()); its gradient is differentiable too. */
export const stopGradient: (x: tf.Tensor) => tf.Tensor = tf.customGrad((...inputs) => {
  const x = inputs[0] as tf.Tensor;
  return { value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
});

function runLayer(
  x: tf.Tensor4D,
  w: tf.Tensor2D,
  layer: StyleGan3Layer,
  net: StyleGan3Synthesis,
  options: StyleGan3RunOptions,
): tf.Tensor4D {
  const beta = net.spec.magnitudeEmaBeta;
  const { plan } = layer;
  if (options.training) {
    // magnitude_ema ← mean(x²) + β(ema − mean(x²)) (the official lerp on the detached input).
    tf.tidy(() => {
      const current = tf.mean(tf.square(x));
      layer.magnitudeEma.assign(tf.add(current, tf.mul(tf.sub(layer.magnitudeEma, current), beta)));
    });
  }
  const inputGain = tf.rsqrt(stopGradient(layer.magnitudeEma));
  let styles = equalizedDense(w, layer.affine);
  if (plan.isToRgb) styles = tf.mul(styles, layer.conv.weightScale) as tf.Tensor2D;
  const y = modulatedConv2d(x, layer.conv.kernel as tf.Tensor4D, styles, {
    demodulate: !plan.isToRgb,
    padding: 'full',
    inputGain,
    impl: options.modConvImpl,
  });
  return filteredLeakyRelu(y, equalizedBias(layer.conv), {
    upFilter: plan.upFilter,
    downFilter: plan.downFilter,
    up: plan.up,
    down: plan.down,
    padding: plan.padding,
    gain: plan.isToRgb ? 1 : Math.SQRT2,
    slope: plan.isToRgb ? 1 : 0.2,
    impl: options.firImpl ?? 'depthwise',
    filterCache: net.filterCache,
  });
}

/** ws [N, numWs, wDim] -> images [N, R, R, imageChannels]. */
export function synthesizeStyleGan3(
  net: StyleGan3Synthesis,
  ws: tf.Tensor3D,
  options: StyleGan3RunOptions = {},
): tf.Tensor4D {
  const [, numWs, wDim] = ws.shape;
  if (numWs !== net.numWs || wDim !== net.spec.wDim) {
    throw new Error(`stylegan3 synthesis: ws must be [N, ${net.numWs}, ${net.spec.wDim}], got [${ws.shape}]`);
  }
  const perLayer = tf.unstack(ws, 1) as tf.Tensor2D[];
  let x = runFourierInput(net.input, perLayer[0]!);
  net.layers.forEach((layer, i) => {
    x = runLayer(x, perLayer[i + 1]!, layer, net, options);
    const expected = layer.plan.outSize;
    if (x.shape[1] !== expected || x.shape[2] !== expected) {
      throw new Error(
        `stylegan3 ${layer.plan.name}: produced ${x.shape[1]}×${x.shape[2]}, planned ${expected}`,
      );
    }
  });
  return tf.mul(x, net.spec.outputScale);
}
