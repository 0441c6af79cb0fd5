// A tiny DCGAN-like architecture for the GAN machinery's tests, built from the shared GAN layers: G = dense to
// 4×4, (nearest upsample, 3×3 conv, lrelu)× up to the resolution, 1×1 to 5 channels; D = 1×1 from 5 channels,
// (3×3 conv, lrelu, average-pool)× down to 4×4, minibatch stddev, conv, dense. With `style: true` it also has a
// small mapping network and per-layer styles (scales), so truncation, style mixing and path-length regularisation
// can be tested without a real StyleGAN. Importing registers 'tiny-dcgan' (non-saturating + R1) and
// 'tiny-dcgan-wgan' (WGAN-GP).
import * as tf from '@tensorflow/tfjs';

import { ParamFactory, disposeVariables } from '../../../layers/params.js';
import {
  createEqualizedConv2d,
  createEqualizedDense,
  downsampleAverage,
  equalizedConv2d,
  equalizedDense,
  leakyReluGain,
  minibatchStddev,
  pixelNorm,
  upsampleNearest,
  type EqualizedConv2dLayer,
  type EqualizedDenseLayer,
} from '../layers.js';
import { registerGanArchitecture } from '../registry.js';
import {
  GAN_CHANNELS,
  type DiscriminatorModel,
  type GanPair,
  type GanTrainingOptions,
  type GenerateOptions,
  type GeneratorModel,
  type MappingOptions,
  type SynthesisOptions,
} from '../types.js';

export const TINY_DCGAN_MODULE = import.meta.url;

export interface TinyDcganConfig extends Record<string, unknown> {
  /** Power of two >= 4. */
  resolution: number;
  latentDim: number;
  width: number;
  /** A mapping network and per-layer styles (default false). */
  style?: boolean;
  mbstdGroup?: number;
}

function levels(resolution: number): number {
  const count = Math.log2(resolution / 4);
  if (!Number.isInteger(count) || count < 0) throw new Error(`tiny-dcgan: resolution ${resolution}`);
  return count;
}

export function buildTinyDcganGenerator(
  config: TinyDcganConfig,
  seed: number,
  name = 'tiny-dcgan',
): GeneratorModel {
  const params = ParamFactory.create(`${seed}/G`, `${name}-G`);
  const { latentDim, width, resolution } = config;
  const ups = levels(resolution);
  const style = config.style ?? false;
  const numStyleLayers = ups + 1;
  const mapping: EqualizedDenseLayer[] = style
    ? [0, 1].map((i) =>
        createEqualizedDense(params.scope('mapping').scope(`fc${i}`), {
          inFeatures: latentDim,
          outFeatures: latentDim,
          lrMultiplier: 0.01,
        }),
      )
    : [];
  const input = createEqualizedDense(params.scope('input'), {
    inFeatures: latentDim,
    outFeatures: 16 * width,
  });
  const convs: EqualizedConv2dLayer[] = [];
  const affines: EqualizedDenseLayer[] = [];
  for (let level = 0; level < ups; level++) {
    convs.push(
      createEqualizedConv2d(params.scope(`up${level}`), {
        inChannels: width,
        outChannels: width,
        kernelSize: 3,
      }),
    );
    if (style) {
      affines.push(
        createEqualizedDense(params.scope(`up${level}`).scope('affine'), {
          inFeatures: latentDim,
          outFeatures: width,
          biasInit: 1,
        }),
      );
    }
  }
  const toRgb = createEqualizedConv2d(params.scope('to_rgb'), {
    inChannels: width,
    outChannels: GAN_CHANNELS,
    kernelSize: 1,
  });

  const mapLatents = (z: tf.Tensor2D, options: MappingOptions = {}): tf.Tensor3D => {
    const map = (latents: tf.Tensor2D) => {
      let w: tf.Tensor2D = pixelNorm(latents);
      for (const layer of mapping) w = leakyReluGain(equalizedDense(w, layer));
      return w;
    };
    let ws = tf.tile(tf.expandDims(map(z), 1), [1, numStyleLayers, 1]) as tf.Tensor3D;
    if (options.styleMixing) {
      const { latents, crossover } = options.styleMixing;
      const other = tf.tile(tf.expandDims(map(latents), 1), [1, numStyleLayers, 1]);
      const mask = tf.reshape(
        tf.tensor1d(Array.from({ length: numStyleLayers }, (_, i) => (i < crossover ? 1 : 0))),
        [1, numStyleLayers, 1],
      );
      ws = tf.add(tf.mul(ws, mask), tf.mul(other, tf.sub(1, mask))) as tf.Tensor3D;
    }
    const psi = options.truncationPsi ?? 1;
    if (psi !== 1) {
      if (!options.averageLatent) throw new Error('tiny-dcgan: truncation needs averageLatent');
      const average = tf.reshape(options.averageLatent, [1, 1, -1]);
      const cutoff = options.truncationCutoff ?? numStyleLayers;
      const layerPsi = tf.reshape(
        tf.tensor1d(Array.from({ length: numStyleLayers }, (_, i) => (i < cutoff ? psi : 1))),
        [1, numStyleLayers, 1],
      );
      ws = tf.add(average, tf.mul(tf.sub(ws, average), layerPsi)) as tf.Tensor3D;
    }
    return ws;
  };

  const synthesizeFrom = (first: tf.Tensor2D, layerStyle: (level: number) => tf.Tensor2D | undefined) => {
    const n = first.shape[0];
    let x = tf.reshape(leakyReluGain(equalizedDense(first, input)), [n, 4, 4, width]) as tf.Tensor4D;
    for (let level = 0; level < ups; level++) {
      x = leakyReluGain(equalizedConv2d(upsampleNearest(x), convs[level]!));
      const s = layerStyle(level);
      if (s) x = tf.mul(x, tf.reshape(equalizedDense(s, affines[level]!), [n, 1, 1, width]));
    }
    return equalizedConv2d(x, toRgb);
  };

  const synthesize = (ws: tf.Tensor3D, _options: SynthesisOptions = {}): tf.Tensor4D => {
    const [n, , dim] = ws.shape;
    const layer = (i: number) => tf.reshape(tf.slice(ws, [0, i, 0], [n, 1, dim]), [n, dim]) as tf.Tensor2D;
    return synthesizeFrom(layer(0), (level) => layer(level + 1));
  };

  const generator: GeneratorModel = {
    architecture: { name, config },
    variables: params.variables,
    latentDim,
    resolution,
    channels: GAN_CHANNELS,
    generate: (z: tf.Tensor2D, options: GenerateOptions = {}) => {
      if (style) return synthesize(mapLatents(z, options), options);
      const psi = options.truncationPsi ?? 1;
      return synthesizeFrom(psi === 1 ? z : tf.mul(z, psi), () => undefined);
    },
    ...(style && { numStyleLayers, wDim: latentDim, mapLatents, synthesize }),
    dispose: () => disposeVariables(params.variables),
  };
  return generator;
}

export function buildTinyDcganDiscriminator(
  config: TinyDcganConfig,
  seed: number,
  name = 'tiny-dcgan',
): DiscriminatorModel {
  const params = ParamFactory.create(`${seed}/D`, `${name}-D`);
  const { width, resolution } = config;
  const downs = levels(resolution);
  const fromRgb = createEqualizedConv2d(params.scope('from_rgb'), {
    inChannels: GAN_CHANNELS,
    outChannels: width,
    kernelSize: 1,
  });
  const convs = Array.from({ length: downs }, (_, level) =>
    createEqualizedConv2d(params.scope(`down${level}`), {
      inChannels: width,
      outChannels: width,
      kernelSize: 3,
    }),
  );
  const final = createEqualizedConv2d(params.scope('final'), {
    inChannels: width + 1,
    outChannels: width,
    kernelSize: 3,
  });
  const head = createEqualizedDense(params.scope('head'), { inFeatures: 16 * width, outFeatures: 1 });
  return {
    architecture: { name: `${name}-discriminator`, config },
    variables: params.variables,
    resolution,
    channels: GAN_CHANNELS,
    score: (images: tf.Tensor4D) => {
      const n = images.shape[0];
      let x = leakyReluGain(equalizedConv2d(images, fromRgb));
      for (const conv of convs) x = downsampleAverage(leakyReluGain(equalizedConv2d(x, conv)));
      x = minibatchStddev(x, config.mbstdGroup ?? 4);
      x = leakyReluGain(equalizedConv2d(x, final));
      return tf.reshape(equalizedDense(tf.reshape(x, [n, 16 * width]), head), [n]);
    },
    dispose: () => disposeVariables(params.variables),
  };
}

export function buildTinyDcgan(config: TinyDcganConfig, seed: number, name = 'tiny-dcgan'): GanPair {
  const generator = buildTinyDcganGenerator(config, seed, name);
  return { generator, discriminator: buildTinyDcganDiscriminator(config, seed, name) };
}

const ADAM = { type: 'adamw' as const, lr: 0.002, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 };

export const TINY_DCGAN_TRAINING: GanTrainingOptions = {
  generatorOptimizer: ADAM,
  discriminatorOptimizer: ADAM,
  r1Gamma: 1,
  lazyRegInterval: 4,
  pathLength: { weight: 2, interval: 2, decay: 0.01, batchShrink: 2 },
  styleMixingProbability: 0.9,
  ema: { halfLifeImages: 500, rampup: 0.05 },
  mirror: true,
};

const PROFILES = {
  paper: { resolution: 64, latentDim: 64, width: 64 },
  cpu: { resolution: 32, latentDim: 32, width: 32 },
  tiny: { resolution: 8, latentDim: 8, width: 8 },
} satisfies Record<string, TinyDcganConfig>;

registerGanArchitecture<TinyDcganConfig>('tiny-dcgan', {
  build: (config, seed) => buildTinyDcgan(config, seed),
  buildGenerator: (config, seed) => buildTinyDcganGenerator(config, seed),
  profiles: PROFILES,
  loss: 'nonsaturating-r1',
  options: TINY_DCGAN_TRAINING,
});

registerGanArchitecture<TinyDcganConfig>('tiny-dcgan-wgan', {
  build: (config, seed) => buildTinyDcgan(config, seed, 'tiny-dcgan-wgan'),
  buildGenerator: (config, seed) => buildTinyDcganGenerator(config, seed, 'tiny-dcgan-wgan'),
  profiles: PROFILES,
  loss: 'wgan-gp',
  options: { ...TINY_DCGAN_TRAINING, gpLambda: 10, driftEpsilon: 0.001 },
});
