// The Fréchet distance's feature network (a U-Net encoder read from a weights file) and the store-level
// comparison that uses it. Tiny U-Nets with fixed seeds (untrained: what is under test is the plumbing and the
// direction of the distance, not a trained network's calibration — docs/generators/README.md has that).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { ANNOTATION_OF_CANONICAL, SLICE_CHANNELS } from '../../slices/presets.js';
import { SliceStoreWriter } from '../../slices/slice-store.js';
import { createRng } from '../../util/rng.js';
import { selectBackend } from '../backend/index.js';
import { compareSliceStores } from '../jobs/generator-jobs.js';
import { buildSegmenter, segmenterArchitecture } from '../segmentation/segmenters.js';
import { encodeWeights, variablesToWeights } from '../weights/index.js';
import { frechetDistanceOfSets, loadFeatureNetwork } from './frechet-features.js';
import type { SliceSet } from './sample-quality.js';

const SIZE = 32;
const PLANE = SIZE * SIZE;

/** Brain-like slices: an ellipse of tissue with a seeded texture, a tumour disc with its own intensities. */
function brainSlices(count: number, seed: number, options: { brightness?: number } = {}): SliceSet {
  const rng = createRng(seed);
  const slices = new Uint8Array(count * PLANE * 5);
  const levels = [
    [90, 120, 110, 95],
    [160, 200, 210, 230],
  ];
  for (let s = 0; s < count; s++) {
    const cy = rng.uniform(10, 22);
    const cx = rng.uniform(10, 22);
    const r = rng.uniform(2, 6);
    const ry = rng.uniform(11, 14);
    const rx = rng.uniform(9, 12);
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        if (((y - 16) / ry) ** 2 + ((x - 16) / rx) ** 2 >= 1) continue;
        const tumour = (y - cy) ** 2 + (x - cx) ** 2 < r * r ? 1 : 0;
        const p = (s * PLANE + y * SIZE + x) * 5;
        for (let c = 0; c < 4; c++) {
          const v =
            levels[tumour]![c]! * (options.brightness ?? 1) + 12 * Math.sin(x / 3 + c) + rng.normal(0, 6);
          slices[p + c] = Math.max(1, Math.min(255, Math.round(v)));
        }
        if (tumour) slices[p + 4] = ANNOTATION_OF_CANONICAL[3]!;
      }
    }
  }
  return { slices, count, size: SIZE };
}

/** Every slice's pixels in a seeded random order: the same histogram, no anatomy. */
function pixelShuffled(set: SliceSet, seed: number): SliceSet {
  const rng = createRng(seed);
  const slices = set.slices.slice();
  for (let s = 0; s < set.count; s++) {
    for (let i = PLANE - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      for (let c = 0; c < 5; c++) {
        const a = (s * PLANE + i) * 5 + c;
        const b = (s * PLANE + j) * 5 + c;
        [slices[a], slices[b]] = [slices[b]!, slices[a]!];
      }
    }
  }
  return { ...set, slices };
}

describe('U-Net encoder features and the Fréchet distance', () => {
  let dir: string;
  let unetDir: string;
  before(async () => {
    await selectBackend({ prefer: 'wasm', logger: () => undefined });
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-frechet-'));
    unetDir = path.join(dir, 'unet');
    const architecture = segmenterArchitecture('unet', 'tiny');
    const model = buildSegmenter(architecture, 3);
    await import('node:fs/promises').then((fs) => fs.mkdir(unetDir));
    await writeFile(
      path.join(unetDir, 'model.weights'),
      encodeWeights(variablesToWeights(model.variables), { architecture }),
    );
    model.dispose();
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('extracts one pooled bottleneck vector per slice, deterministically and without leaking tensors', async () => {
    const network = await loadFeatureNetwork(unetDir);
    try {
      assert.equal(network.dim, 32, 'tiny U-Net: deepest stage has 32 feature maps');
      assert.equal(network.point, 'pre-norm');
      const set = brainSlices(5, 1);
      const tensors = tf.memory().numTensors;
      const a = await network.extract(set, 2);
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(a.length, 5 * 32);
      assert.ok(a.every(Number.isFinite));
      // batching does not change a slice's features; different slices differ
      const b = await network.extract(set, 5);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-5);
      assert.notDeepEqual(a.subarray(0, 32), a.subarray(32, 64));
      // only the image channels are read: the annotation does not change the features
      const noLabels = { ...set, slices: set.slices.map((v, i) => (i % 5 === 4 ? 0 : v)) };
      assert.deepEqual(await network.extract(noLabels, 5), b);
    } finally {
      network.dispose();
    }
  });

  it('gives 0 for a set against itself and ranks a brighter or pixel-shuffled set worse than a fresh draw', async () => {
    const network = await loadFeatureNetwork(unetDir);
    try {
      const real = brainSlices(48, 10);
      const self = await frechetDistanceOfSets(network, real, real);
      assert.ok(self.distance < 1e-9, `self ${self.distance}`);
      const fresh = (await frechetDistanceOfSets(network, real, brainSlices(48, 11))).distance;
      const brighter = (await frechetDistanceOfSets(network, real, brainSlices(48, 11, { brightness: 1.3 })))
        .distance;
      const shuffled = (await frechetDistanceOfSets(network, real, pixelShuffled(brainSlices(48, 11), 4)))
        .distance;
      assert.ok(fresh < brighter, `fresh ${fresh} vs brighter ${brighter}`);
      assert.ok(fresh < shuffled, `fresh ${fresh} vs shuffled ${shuffled}`);
      assert.match(self.featureSpace, /not FID/);
      assert.equal(self.realCount, 48);
    } finally {
      network.dispose();
    }
  });

  it('refuses a Swin segmenter and a missing model, naming the file', async () => {
    const swinDir = path.join(dir, 'swin');
    const architecture = segmenterArchitecture('swin', 'tiny');
    const swin = buildSegmenter(architecture, 1);
    await import('node:fs/promises').then((fs) => fs.mkdir(swinDir));
    await writeFile(
      path.join(swinDir, 'model.weights'),
      encodeWeights(variablesToWeights(swin.variables), { architecture }),
    );
    swin.dispose();
    await assert.rejects(
      loadFeatureNetwork(swinDir),
      /swin\/model\.weights: a 'swin' model; .* needs a U-Net/,
    );
    await assert.rejects(
      loadFeatureNetwork(path.join(dir, 'nothing')),
      /nothing\/model\.weights: cannot read/,
    );
  });

  it('compareSliceStores: picks splits from stores and adds the FD to the report', async () => {
    const file = path.join(dir, 'real.fss');
    const writer = await SliceStoreWriter.create(file, {
      preset: 'cpu32',
      scale: 'max',
      size: SIZE,
      channels: [...SLICE_CHANNELS],
      dtype: 'uint8',
      layout: 'NHWC',
      annotation: { NCR: 51, ED: 102, ET: 204 },
      split: { seed: 0, testFraction: 0.5 },
      createdAt: new Date().toISOString(),
    });
    const subjects: Array<[string, 'train' | 'test', SliceSet]> = [
      ['a', 'train', brainSlices(20, 20)],
      ['b', 'test', brainSlices(12, 21)],
    ];
    for (const [id, split, set] of subjects) {
      await writer.addSubject(
        {
          id,
          split,
          labelled: true,
          z: Array.from({ length: set.count }, (_, i) => i),
          sourceDims: [240, 240, 155],
          reference: {},
        },
        set.slices,
      );
    }
    await writer.close();

    const baseline = await compareSliceStores({
      real: file,
      synthetic: file,
      syntheticSplit: 'test',
      features: unetDir,
    });
    assert.equal(baseline.report.realCount, 20);
    assert.equal(baseline.report.syntheticCount, 12);
    assert.ok(baseline.report.frechet && baseline.report.frechet.distance > 0);
    const withoutFeatures = await compareSliceStores({ real: file, synthetic: file, syntheticSplit: 'all' });
    assert.equal(withoutFeatures.report.syntheticCount, 32);
    assert.equal(withoutFeatures.report.frechet, undefined);
    // the same sets through the in-memory path give the same distance
    const direct = await compareSliceStores({ real: file, synthetic: subjects[1]![2], features: unetDir });
    assert.equal(direct.report.frechet!.distance, baseline.report.frechet!.distance);
  });
});
