import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { SEGMENTATION_CLASSES } from '../model.js';
import { gradientNorms, phantomBatch, snapshot, useWasm } from './segmentation-spec-helpers.js';
import { SWIN_PROFILES, buildSwinSegmenter } from './swin.js';

const TINY = SWIN_PROFILES.tiny;

describe('Swin segmenter', () => {
  before(useWasm);

  it('returns full-resolution logits at two resolutions and at one that needs window padding', () => {
    const model = buildSwinSegmenter(TINY, 1);
    after(() => model.dispose());
    // 32: tokens 16² and 8²; 64: 32² and 16²; 24: 12² and 6² (padded to 8², masked).
    for (const size of [32, 64, 24]) {
      tf.tidy(() => {
        const images = tf.randomUniform([2, size, size, 4], -1, 1, 'float32', size) as tf.Tensor4D;
        for (const training of [false, true]) {
          const outputs = model.forward(images, training);
          assert.deepEqual(
            outputs.map((t) => t.shape),
            [[2, size, size, SEGMENTATION_CLASSES]],
          );
          assert.ok(outputs[0]!.isFinite().all().dataSync()[0]);
        }
      });
    }
    assert.throws(() => model.forward(tf.zeros([1, 30, 30, 4]) as tf.Tensor4D, false), /not divisible by/);
  });

  it('names its variables like the reference Swin and UperNet', () => {
    const model = buildSwinSegmenter(TINY, 1);
    after(() => model.dispose());
    const v = model.variables;
    assert.deepEqual(v['patchEmbed/proj/kernel']!.shape, [2, 2, 4, 16]);
    assert.deepEqual(v['stage0/block1/attn/relativeBiasTable']!.shape, [7 * 7, 2]);
    assert.deepEqual(v['stage0/block0/attn/qkv/kernel']!.shape, [16, 48]);
    assert.deepEqual(v['stage0/block0/mlp/fc1/kernel']!.shape, [16, 32]);
    assert.deepEqual(v['stage1/merge/reduction/kernel']!.shape, [64, 32]);
    assert.equal(v['stage1/merge/reduction/bias'], undefined);
    assert.deepEqual(v['decoder/fuse/conv/kernel']!.shape, [3, 3, 32, 16]);
    assert.deepEqual(v['decoder/classifier/kernel']!.shape, [1, 1, 16, SEGMENTATION_CLASSES]);
    assert.equal(model.architecture.name, 'swin');
  });

  it('builds the same weights for the same seed and different ones for another', () => {
    const a = buildSwinSegmenter(TINY, 7);
    const b = buildSwinSegmenter(TINY, 7);
    const c = buildSwinSegmenter(TINY, 8);
    after(() => [a, b, c].forEach((m) => m.dispose()));
    const [sa, sb, sc] = [a, b, c].map(snapshot);
    for (const [name, values] of sa) assert.deepEqual(values, sb.get(name), name);
    assert.notDeepEqual(sa.get('stage0/block0/attn/qkv/kernel'), sc.get('stage0/block0/attn/qkv/kernel'));
  });

  it('has a non-zero gradient for every variable', () => {
    const model = buildSwinSegmenter(TINY, 3);
    const { images, labels } = phantomBatch(1, 2, 32);
    after(() => {
      tf.dispose([images, labels]);
      model.dispose();
    });
    const norms = gradientNorms(model, images, labels);
    for (const name of Object.keys(model.variables)) {
      assert.ok((norms.get(name) ?? 0) > 0, `no gradient for ${name}`);
    }
  });

  it('rejects stage widths that do not split into the heads', () => {
    assert.throws(() => buildSwinSegmenter({ ...TINY, heads: [3, 4] }, 1), /not divisible into 3 heads/);
    assert.throws(() => buildSwinSegmenter({ ...TINY, heads: [2] }, 1), /one head count per stage/);
  });
});
