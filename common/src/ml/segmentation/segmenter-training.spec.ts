// Both segmenters overfit one fixed batch on wasm, with a flat tensor count across steps.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import type { Segmenter } from '../model.js';
import { phantomBatch, trainStep, useWasm } from './segmentation-spec-helpers.js';
import { SWIN_PROFILES, buildSwinSegmenter } from './swin.js';
import { UNET_PROFILES, buildUNet } from './unet.js';

const STEPS = 30;

function overfit(model: Segmenter, optimizer: tf.Optimizer): { losses: number[]; tensorCounts: number[] } {
  const { images, labels } = phantomBatch(11, 2, 32);
  const losses: number[] = [];
  const tensorCounts: number[] = [];
  try {
    for (let step = 0; step < STEPS; step++) {
      losses.push(trainStep(model, optimizer, images, labels));
      tensorCounts.push(tf.memory().numTensors);
    }
  } finally {
    tf.dispose([images, labels]);
  }
  return { losses, tensorCounts };
}

function assertLearns({ losses, tensorCounts }: { losses: number[]; tensorCounts: number[] }): void {
  assert.ok(losses.every(Number.isFinite), `losses ${losses}`);
  const first = losses[0]!;
  const last = losses[losses.length - 1]!;
  assert.ok(last < 0.75 * first, `loss ${first.toFixed(3)} -> ${last.toFixed(3)} after ${STEPS} steps`);
  // After the first step (optimizer slots, cached window constants) every step leaves the count unchanged.
  assert.deepEqual(new Set(tensorCounts.slice(1)).size, 1, `tensor counts ${tensorCounts}`);
}

describe('segmenter training on wasm', () => {
  before(useWasm);

  it('U-Net (tiny, deep supervision, SGD Nesterov 0.99 as in the paper) lowers the loss on one batch', () => {
    const model = buildUNet(UNET_PROFILES.tiny, 1);
    const optimizer = tf.train.momentum(0.01, 0.99, true);
    after(() => {
      model.dispose();
      optimizer.dispose();
    });
    assertLearns(overfit(model, optimizer));
  });

  it('Swin (tiny, Adam) lowers the loss on one batch', () => {
    const model = buildSwinSegmenter(SWIN_PROFILES.tiny, 1);
    const optimizer = tf.train.adam(3e-3);
    after(() => {
      model.dispose();
      optimizer.dispose();
    });
    assertLearns(overfit(model, optimizer));
  });

  it('releases every tensor it made once the model and optimizer are disposed', () => {
    const before = tf.memory().numTensors;
    const model = buildSwinSegmenter(SWIN_PROFILES.tiny, 2);
    const optimizer = tf.train.adam(1e-3);
    const { images, labels } = phantomBatch(1, 1, 32);
    trainStep(model, optimizer, images, labels);
    tf.dispose([images, labels]);
    model.dispose();
    optimizer.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});
