import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { buildSegmenter, segmenterArchitecture } from './segmenters.js';
import { snapshot, useWasm } from './segmentation-spec-helpers.js';

describe('buildSegmenter', () => {
  before(useWasm);

  it('rebuilds a model from its own architecture record, weights included for the same seed', () => {
    for (const name of ['unet', 'swin'] as const) {
      const original = buildSegmenter(segmenterArchitecture(name, 'tiny'), 4);
      const rebuilt = buildSegmenter(structuredClone(original.architecture), 4);
      after(() => {
        original.dispose();
        rebuilt.dispose();
      });
      assert.equal(rebuilt.architecture.name, name);
      assert.deepEqual(rebuilt.architecture, original.architecture);
      assert.deepEqual(snapshot(rebuilt), snapshot(original));
    }
  });

  it('refuses unknown names and incomplete configs', () => {
    assert.throws(() => buildSegmenter({ name: 'vnet', config: {} }, 1), /unknown segmenter 'vnet'/);
    assert.throws(() => buildSegmenter({ name: 'unet', config: { depth: 3 } }, 1), /lacks inputSize/);
  });
});
