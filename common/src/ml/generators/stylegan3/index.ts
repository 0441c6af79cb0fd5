// StyleGAN 3: importing this module registers the 'stylegan3' GAN architecture.
import { registerGanArchitecture } from '../gan/registry.js';
import type { GanTrainingOptions } from '../gan/types.js';
import {
  STYLEGAN3_PROFILES,
  buildStyleGan3,
  buildStyleGan3Generator,
  type StyleGan3Config,
} from './stylegan3.js';

export * from './filtered-lrelu.js';
export * from './filters.js';
export * from './fourier.js';
export * from './stylegan3.js';
export * from './synthesis.js';

/**
 * The official recipe (stylegan3 repo, --cfg=stylegan3-t; the study: batch 32, mirror, γ 8–10): Adam β (0, 0.99),
 * G lr 0.0025, D lr 0.002, lazy R1 every 16 D steps (γ 8 here), no path-length regularisation, no style mixing,
 * G EMA half-life 10k images with ramp-up 0.05. (The official recipe also blurs D's inputs with σ fading from 10 px
 * to 0 over the first 200k images; the shared task has no hook for it yet.)
 */
export const STYLEGAN3_TRAINING: GanTrainingOptions = {
  generatorOptimizer: { type: 'adamw', lr: 0.0025, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 },
  discriminatorOptimizer: { type: 'adamw', lr: 0.002, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 },
  r1Gamma: 8,
  lazyRegInterval: 16,
  styleMixingProbability: 0,
  ema: { halfLifeImages: 10_000, rampup: 0.05 },
  mirror: true,
};

registerGanArchitecture<StyleGan3Config>('stylegan3', {
  build: (config, seed) => buildStyleGan3(config, seed),
  buildGenerator: (config, seed) => buildStyleGan3Generator(config, seed),
  profiles: STYLEGAN3_PROFILES,
  loss: 'nonsaturating-r1',
  options: STYLEGAN3_TRAINING,
  profileOptions: {
    // 15 minutes at 32² (README, "Generators"): γ 1 took the T2/FLAIR histogram intersections from 0.55/0.66 (γ 8,
    // 684 steps) to 0.65/0.70 and 0.65/0.69 (two runs, ~700 steps).
    cpu32: { r1Gamma: 1 },
  },
});
