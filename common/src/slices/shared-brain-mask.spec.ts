// The shared brain mask on hand-made pixels, and on the real BraTS case: its sequences share one mask (33 of its
// 1.15 M brain pixels differ, measured), so the rule barely touches real slices.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { discoverBratsCases } from '../brats/case-discovery.js';
import { loadCase } from '../brats/case-loader.js';
import { sharedDataFile } from '../testing/paths.js';
import { SLICE_PRESETS } from './presets.js';
import { applySharedBrainMask } from './shared-brain-mask.js';
import { sliceCase } from './slicer.js';

describe('applySharedBrainMask', () => {
  it('blacks out every channel of a pixel that is black in any sequence, and counts the pixels it changed', () => {
    const pixels = [
      [10, 20, 30, 40, 51], // brain with NCR: kept
      [0, 20, 30, 40, 0], // T1 black: a halo in the other three -> background
      [10, 20, 30, 0, 102], // T1ce black, labelled ED -> background, label dropped
      [0, 0, 0, 0, 204], // background with a stray ET label -> label dropped
      [0, 0, 0, 0, 0], // background: unchanged, not counted
      [1, 1, 1, 1, 0], // dim but in all four: kept
    ];
    const bytes = Uint8Array.from(pixels.flat());
    assert.equal(applySharedBrainMask(bytes), 3);
    assert.deepEqual([...bytes], [10, 20, 30, 40, 51, ...new Array<number>(20).fill(0), 1, 1, 1, 1, 0]);
    assert.throws(() => applySharedBrainMask(new Uint8Array(7)), /not a whole number of 5-channel pixels/);
  });

  it('changes almost nothing in the real BraTS case (its four sequences share one brain mask)', async () => {
    const { cases } = await discoverBratsCases(sharedDataFile('brats-sample', 'BraTS-GLI-00000-000'));
    const sliced = sliceCase(await loadCase(cases[0]!), SLICE_PRESETS.paper, 'max');
    const bytes = sliced.data.slice();
    let brain = 0;
    for (let p = 0; p < bytes.length; p += 5)
      if (bytes[p]! + bytes[p + 1]! + bytes[p + 2]! + bytes[p + 3]! > 0) brain++;
    const changed = applySharedBrainMask(bytes);
    assert.ok(brain > 100_000, `${brain} brain pixels`);
    assert.ok(changed / brain < 0.001, `${changed} of ${brain} brain pixels changed`);
  });
});
