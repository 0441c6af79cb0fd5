// Every shipped GAN's moving average of G must follow the trained weights in a short run: a constant β such as
// ProGAN's 0.999 per step leaves 0.999^600 = 55 % of the random initialisation after 600 steps, and a half-life of
// 10k images without ramp-up 90 % after 170 steps of 8 — measured, those 15-minute CPU runs sampled noise from
// G_ema while their raw G drew brains.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emaBetaAt } from '../../training/registry.js';
import '../progan/index.js';
import '../stylegan1/index.js';
import '../stylegan2/index.js';
import '../stylegan3/index.js';
import { ganArchitecture } from './registry.js';

/** Share of the initial weights left in the average after `steps` steps of `batch` images. */
function initialShareLeft(beta: Parameters<typeof emaBetaAt>[0], steps: number, batch: number): number {
  let share = 1;
  for (let step = 0; step < steps; step++) share *= emaBetaAt(beta, step, batch);
  return share;
}

describe('G_ema of the shipped GANs in a short run', () => {
  for (const name of ['progan', 'stylegan1', 'stylegan2', 'stylegan3']) {
    it(`${name}: after 200 steps of 8 images, under 1 % of the initialisation is left`, () => {
      const ema = ganArchitecture(name).options.ema;
      assert.ok(ema !== undefined, `${name} declares its EMA`);
      const beta = 'beta' in ema ? ema.beta : ema;
      assert.ok(initialShareLeft(beta, 200, 8) < 0.01, `${name}: ${JSON.stringify(ema)}`);
      // and the steady state still averages over thousands of images (not a copy of the last step)
      assert.ok(emaBetaAt(beta, 1_000_000, 8) > 0.999, `${name}: steady-state β`);
    });
  }
});
