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
    // G's weights averaged with decay 0.999 per step for the outputs.
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
    ema: { beta: 0.999 },
    mirror: true,
  },
});
