// The four GAN architectures' CPU profiles and the output floor at black, through the registry (as train-gen and
// sample reach them).
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../../backend/index.js';
import { growthAt, growthLevels } from '../progan/growth.js';
import '../progan/index.js';
import '../stylegan1/index.js';
import '../stylegan2/index.js';
import '../stylegan3/index.js';
import { BLACK_FLOOR_SHARPNESS } from './layers.js';
import { buildGenerator, ganConfig } from './registry.js';
import { GAN_CHANNELS } from './types.js';

const ARCHITECTURES = ['progan', 'stylegan1', 'stylegan2', 'stylegan3'] as const;

function outputRange(name: string, config: Record<string, unknown>): { min: number; shape: number[] } {
  const generator = buildGenerator({ name, config }, 3);
  try {
    return tf.tidy(() => {
      const z = tf.randomNormal([2, generator.latentDim], 0, 1, 'float32', 5) as tf.Tensor2D;
      const images = generator.generate(z);
      return { min: tf.min(images).dataSync()[0]!, shape: images.shape };
    });
  } finally {
    generator.dispose();
  }
}

describe('GAN CPU profiles and the output floor', () => {
  before(() => selectBackend({ prefer: 'wasm', logger: () => {} }));

  for (const name of ARCHITECTURES) {
    it(`${name}: cpu32 is the 32² profile, cpu the 64² one, both floored at black`, () => {
      const cpu32 = ganConfig(name, { profile: 'cpu32' });
      const cpu = ganConfig(name, { profile: 'cpu' });
      assert.equal(cpu32.resolution, 32);
      assert.equal(cpu.resolution, 64);
      assert.equal(cpu32.blackFloorSharpness, BLACK_FLOOR_SHARPNESS);
      assert.equal(cpu.blackFloorSharpness, BLACK_FLOOR_SHARPNESS);
      const { min, shape } = outputRange(name, cpu32);
      assert.deepEqual(shape, [2, 32, 32, GAN_CHANNELS]);
      assert.ok(min >= -1, `${name} cpu32: output minimum ${min} must not go below −1 (the floor)`);
    });
  }

  it('progan cpu32 grows by images (200 steps of 8 per phase), then trains at 32² until the run ends', () => {
    const config = ganConfig('progan', { profile: 'cpu32' });
    const levels = growthLevels(config.resolution as number);
    const at = (imagesSeen: number) =>
      growthAt(config.growth as Parameters<typeof growthAt>[0], levels, {
        step: imagesSeen / 8,
        totalSteps: 100_000,
        imagesSeen,
      });
    assert.deepEqual(at(1_000), { level: 0, alpha: 1 });
    assert.deepEqual(at(5 * 1_600 + 800), { level: 3, alpha: 0.5 });
    assert.deepEqual(at(7 * 1_600), { level: 3, alpha: 1 });
    assert.deepEqual(at(800_000), { level: 3, alpha: 1 });
    // the 64² cpu profile keeps equal phases over the run
    assert.deepEqual(ganConfig('progan', { profile: 'cpu' }).growth, { kind: 'equal' });
  });

  it('a config without the setting (made before the floor) builds and keeps its linear output', () => {
    // StyleGAN 2's tiny config with a large output scale: without the floor the output goes below −1, with it not.
    const floored = ganConfig('stylegan2', { profile: 'tiny' });
    const { blackFloorSharpness: _omit, ...linear } = floored;
    const minimum = (config: Record<string, unknown>) => {
      const generator = buildGenerator({ name: 'stylegan2', config }, 4);
      try {
        return tf.tidy(() => {
          const z = tf.randomNormal([4, generator.latentDim], 0, 1, 'float32', 6) as tf.Tensor2D;
          // Scale every toRGB weight up so the untrained output spans well beyond [-1, 1].
          for (const [key, variable] of Object.entries(generator.variables)) {
            if (/torgb\/kernel$/.test(key)) variable.assign(tf.mul(variable, 50));
          }
          return tf.min(generator.generate(z)).dataSync()[0]!;
        });
      } finally {
        generator.dispose();
      }
    };
    assert.ok(minimum(linear) < -1.05, 'the linear output reaches below −1');
    assert.ok(minimum(floored) >= -1, 'the floored output does not');
  });
});
