// StyleGAN 1: registers the 'stylegan1' GAN architecture (non-saturating loss + R1, style mixing) at import time.
import { registerGanArchitecture } from '../gan/registry.js';
import type { ProGanDiscriminator } from '../progan/index.js';
import {
  STYLEGAN1_NAME,
  STYLEGAN1_PROFILES,
  buildStyleGan1Discriminator,
  buildStyleGan1Generator,
  type StyleGan1Config,
  type StyleGan1Generator,
} from './stylegan1.js';

export * from './stylegan1.js';

export function buildStyleGan1(
  config: StyleGan1Config,
  seed: number,
): { generator: StyleGan1Generator; discriminator: ProGanDiscriminator } {
  const generator = buildStyleGan1Generator(config, seed);
  try {
    return { generator, discriminator: buildStyleGan1Discriminator(config, seed) };
  } catch (error) {
    generator.dispose();
    throw error;
  }
}

registerGanArchitecture<StyleGan1Config>(STYLEGAN1_NAME, {
  build: buildStyleGan1,
  buildGenerator: buildStyleGan1Generator,
  profiles: STYLEGAN1_PROFILES,
  loss: 'nonsaturating-r1',
  options: {
    // Official StyleGAN 1 (train.py at 256²): Adam lr 0.002, β1 0, β2 0.99, ε 1e-8 for both; R1 γ 10 in every D
    // step; style mixing with probability 0.9; G_smoothing_kimg 10.
    generatorOptimizer: { type: 'adamw', lr: 0.002, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 },
    discriminatorOptimizer: {
      type: 'adamw',
      lr: 0.002,
      beta1: 0,
      beta2: 0.99,
      epsilon: 1e-8,
      weightDecay: 0,
    },
    r1Gamma: 10,
    lazyRegInterval: 1,
    styleMixingProbability: 0.9,
    // StyleGAN's 10k-image half-life, ramped up over the first images (StyleGAN 2's rule) so a short run's average is
    // not mostly the random initialisation
    ema: { halfLifeImages: 10_000, rampup: 0.05 },
    mirror: true,
  },
  profileOptions: {
    // 15 minutes at 32² (README, "Generators"): R1 every 16 D steps (StyleGAN 2's lazy rule) instead of every step,
    // 1,551 steps instead of 918; no style mixing, FLAIR 0.66 → 0.71 and tumour area ratio 0.22 → 0.35 (shared-mask
    // samples, ~1,500 steps each).
    cpu32: { lazyRegInterval: 16, styleMixingProbability: 0 },
  },
});
