import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../backend/index.js';
import { buildSegmenter, segmenterArchitecture } from '../segmentation/segmenters.js';
import { assignWeights, decodeWeights, encodeWeights, variablesToWeights } from '../weights/index.js';
import { predictLabelMaps } from './segmenter-evaluation.js';

describe('segmenter weights round trip', () => {
  before(async () => {
    await selectBackend({ prefer: 'wasm', logger: () => undefined });
  });

  for (const name of ['unet', 'swin'] as const) {
    it(`${name}: save -> load into a differently initialised model gives identical predictions`, async () => {
      const architecture = segmenterArchitecture(name, 'tiny');
      const original = buildSegmenter(architecture, 1);
      const restored = buildSegmenter(architecture, 2);
      const size = architecture.config.inputSize as number;
      const images = tf.randomUniform([3, size, size, 4], -1, 1, 'float32', 7).dataSync() as Float32Array;
      try {
        const logitsOf = (model: typeof original) =>
          tf.tidy(() => model.forward(tf.tensor4d(images, [3, size, size, 4]), false)[0]!.dataSync());
        const before = logitsOf(original);
        assert.notDeepEqual(logitsOf(restored), before, 'different seeds start different');
        const blob = encodeWeights(variablesToWeights(original.variables), { architecture });
        const decoded = decodeWeights(blob, 'roundtrip.weights');
        assert.deepEqual(decoded.manifest.architecture, architecture);
        const tensorsBefore = tf.memory().numTensors;
        assignWeights(restored.variables, decoded.tensors);
        assert.equal(tf.memory().numTensors, tensorsBefore, 'assignment leaks no tensors');
        assert.deepEqual(logitsOf(restored), before);
        assert.deepEqual(
          await predictLabelMaps(restored, images, 3, size),
          await predictLabelMaps(original, images, 3, size),
        );
      } finally {
        original.dispose();
        restored.dispose();
      }
    });
  }
});
