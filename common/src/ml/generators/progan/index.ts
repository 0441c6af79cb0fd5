// Progressive GAN: registers the 'progan' GAN architecture (WGAN-GP, progressive growing) at import time.
import { registerGanArchitecture } from '../gan/registry.js';
import {
  PROGAN_NAME,
  PROGAN_PROFILES,
  buildProGanDiscriminator,
  buildProGanGenerator,
  type ProGanConfig,
  type ProGanDiscriminator,
  type ProGanGenerator,
} from './progan.js';

export * from './growth.js';
export * from './progan.js';

export function buildProGan(
  config: ProGanConfig,
  seed: number,
): { generator: ProGanGenerator; discriminator: ProGanDiscriminator } {
  const generator = buildProGanGenerator(config, seed);
  try {
    return { generator, discriminator: buildProGanDiscriminator(config, seed) };
  } catch (error) {
    generator.dispose();
    throw error;
  }
}

registerGanArchitecture<ProGanConfig>(PROGAN_NAME, {
  build: buildProGan,
  buildGenerator: buildProGanGenerator,
  profiles: PROGAN_PROFILES,
  loss: 'wgan-gp',
  options: {
    // The paper (§A.1): Adam lr 0.001, β1 0, β2 0.99, ε 1e-8; WGAN-GP λ 10 with the drift term ε_drift 0.001;
    // G's weights averaged for the outputs: the paper's decay 0.999 per minibatch of 16 is a half-life of ≈ 11k images.
    // Ramped up over the first images as StyleGAN 2 does: a constant 0.999 leaves a short CPU run's average mostly the
    // random initialisation (0.999^600 = 55 %: measured, the 15-minute run sampled saturated noise while its raw G drew
    // brains).
    generatorOptimizer: { type: 'adamw', lr: 0.001, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 },
    discriminatorOptimizer: {
      type: 'adamw',
      lr: 0.001,
      beta1: 0,
      beta2: 0.99,
      epsilon: 1e-8,
      weightDecay: 0,
    },
    gpLambda: 10,
    driftEpsilon: 0.001,
    ema: { halfLifeImages: 11_000, rampup: 0.05 },
    mirror: true,
  },
});
