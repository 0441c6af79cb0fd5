// StyleGAN 2: importing this module registers the 'stylegan2' GAN architecture.
import { registerGanArchitecture } from '../gan/registry.js';
import type { GanTrainingOptions } from '../gan/types.js';
import {
  STYLEGAN2_PROFILES,
  buildStyleGan2,
  buildStyleGan2Generator,
  type StyleGan2Config,
} from './stylegan2.js';

export * from './discriminator.js';
export * from './mapping.js';
export * from './modulated-conv.js';
export * from './stylegan2.js';
export * from './synthesis.js';
export * from './upfirdn.js';

/**
 * The official recipe (stylegan3 repo, --cfg=stylegan2; the study: batch 32, mirror, γ 8–10): Adam β (0, 0.99),
 * G lr 0.002 / D lr 0.002, lazy R1 every 16 D steps with γ 10, path length weight 2 every 4 G steps on half the
 * batch, style mixing 0.9, G EMA half-life 10k images with ramp-up 0.05. At 64² (cpu profile) a smaller γ
 * (StyleGAN2-ADA's heuristic 0.0002·R² ≈ 1) may suit better; the task config can override it.
 */
export const STYLEGAN2_TRAINING: GanTrainingOptions = {
  generatorOptimizer: { type: 'adamw', lr: 0.002, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 },
  discriminatorOptimizer: { type: 'adamw', lr: 0.002, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 },
  r1Gamma: 10,
  lazyRegInterval: 16,
  pathLength: { weight: 2, interval: 4, decay: 0.01, batchShrink: 2 },
  styleMixingProbability: 0.9,
  ema: { halfLifeImages: 10_000, rampup: 0.05 },
  mirror: true,
};

registerGanArchitecture<StyleGan2Config>('stylegan2', {
  build: (config, seed) => buildStyleGan2(config, seed),
  buildGenerator: (config, seed) => buildStyleGan2Generator(config, seed),
  profiles: STYLEGAN2_PROFILES,
  loss: 'nonsaturating-r1',
  options: STYLEGAN2_TRAINING,
});
