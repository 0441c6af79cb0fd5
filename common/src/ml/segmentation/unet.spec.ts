import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { countParameters } from '../layers/index.js';
import { SEGMENTATION_CLASSES } from '../model.js';
import { gradientNorms, phantomBatch, snapshot, useWasm } from './segmentation-spec-helpers.js';
import { UNET_PROFILES, buildUNet, unetFilters, unetOutputLevels, type UNetConfig } from './unet.js';

const TINY = UNET_PROFILES.tiny;

describe('U-Net', () => {
  before(useWasm);

  it('returns full-resolution logits in eval, deep-supervision outputs in training, at two sizes', () => {
    const model = buildUNet(TINY, 1);
    after(() => model.dispose());
    for (const size of [32, 64]) {
      tf.tidy(() => {
        const images = tf.zeros([2, size, size, 4]) as tf.Tensor4D;
        assert.deepEqual(
          model.forward(images, false).map((t) => t.shape),
          [[2, size, size, SEGMENTATION_CLASSES]],
        );
        // depth 4: decoder stages at 1/4, 1/2, 1; the lowest is dropped as in nnU-Net.
        assert.deepEqual(
          model.forward(images, true).map((t) => t.shape),
          [
            [2, size, size, SEGMENTATION_CLASSES],
            [2, size / 2, size / 2, SEGMENTATION_CLASSES],
          ],
        );
      });
    }
  });

  it('gives the paper depth four outputs (1, 1/2, 1/4, 1/8) and none without deep supervision', () => {
    assert.deepEqual(unetOutputLevels(UNET_PROFILES.paper), [0, 1, 2, 3]);
    assert.deepEqual(unetOutputLevels({ depth: 6, deepSupervision: false }), [0]);
    assert.deepEqual(unetFilters(UNET_PROFILES.paper), [64, 128, 256, 512, 512, 512]);
    const model = buildUNet({ ...TINY, deepSupervision: false }, 1);
    after(() => model.dispose());
    assert.ok(!Object.keys(model.variables).some((name) => name.startsWith('dec1/head')));
    tf.tidy(() => assert.equal(model.forward(tf.zeros([1, 32, 32, 4]) as tf.Tensor4D, true).length, 1));
  });

  it('names its variables by stage and layer, with no bias before an instance norm', () => {
    const model = buildUNet(TINY, 1);
    after(() => model.dispose());
    const names = Object.keys(model.variables);
    for (const name of [
      'enc0/block0/conv/kernel',
      'enc3/block1/norm/gamma',
      'dec0/up/kernel',
      'dec0/head/bias',
    ]) {
      assert.ok(names.includes(name), name);
    }
    assert.ok(!names.some((name) => /block\d\/conv\/bias|up\/bias/.test(name)));
    assert.deepEqual(model.variables['enc1/block0/conv/kernel']!.shape, [3, 3, 8, 16]);
    assert.deepEqual(model.variables['dec2/up/kernel']!.shape, [2, 2, 32, 32]);
    assert.deepEqual(model.variables['dec0/block0/conv/kernel']!.shape, [3, 3, 16, 8]);
    assert.equal(model.architecture.name, 'unet');
  });

  it('builds the same weights for the same seed and different ones for another', () => {
    const a = buildUNet(TINY, 7);
    const b = buildUNet(TINY, 7);
    const c = buildUNet(TINY, 8);
    after(() => [a, b, c].forEach((m) => m.dispose()));
    const [sa, sb, sc] = [a, b, c].map(snapshot);
    assert.deepEqual([...sa.keys()], [...sb.keys()]);
    for (const [name, values] of sa) assert.deepEqual(values, sb.get(name), name);
    assert.notDeepEqual(sa.get('enc0/block0/conv/kernel'), sc.get('enc0/block0/conv/kernel'));
  });

  it('has a non-zero gradient for every variable', () => {
    const model = buildUNet(TINY, 3);
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

  it('rejects inputs that do not halve evenly down to the lowest stage', () => {
    assert.throws(() => buildUNet({ ...TINY, inputSize: 36 }, 1), /not divisible by 8/);
    const model = buildUNet(TINY, 1);
    after(() => model.dispose());
    assert.throws(() => model.forward(tf.zeros([1, 20, 20, 4]) as tf.Tensor4D, false), /not divisible/);
  });

  it('counts parameters as the layer shapes say', () => {
    const config: UNetConfig = { ...TINY, depth: 2, baseFilters: 4, maxFilters: 8 };
    const model = buildUNet(config, 1);
    after(() => model.dispose());
    // enc0: 3·3·4·4 + 3·3·4·4 + 2 norms · 8; enc1: 3·3·4·8 + 3·3·8·8 + 2·16;
    // dec0: up 2·2·8·4, 3·3·8·4 + 3·3·4·4 + 2·8, head 4·4 + 4.
    const expected = 144 + 144 + 16 + (288 + 576 + 32) + (128 + 288 + 144 + 16 + 20);
    assert.equal(countParameters(model.variables), expected);
  });
});
