import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { SliceStoreReader, SliceStoreWriter } from '../../slices/slice-store.js';
import { selectBackend } from '../backend/index.js';
import type { Segmenter } from '../model.js';
import { evaluateSegmenter } from './segmenter-evaluation.js';

// A stand-in segmenter whose prediction is written into the image: ET wherever the T1 byte is 255. The
// evaluation's bookkeeping (slice placement, spacing, splits) is what is under test, not a network.
const thresholdSegmenter: Segmenter = {
  architecture: { name: 'threshold', config: {} },
  variables: {},
  dispose: () => undefined,
  forward: (images) => [
    tf.tidy(() => {
      const et = tf.cast(tf.greater(tf.slice(images, [0, 0, 0, 0], [-1, -1, -1, 1]), 0.99), 'float32');
      return tf.concat([tf.sub(1, et), tf.zerosLike(et), tf.zerosLike(et), et], 3) as tf.Tensor4D;
    }),
  ],
};

const SIZE = 16;

function slice(truthEt: boolean, predictedEt: boolean): Uint8Array {
  const bytes = new Uint8Array(SIZE * SIZE * 5);
  for (let y = 4; y < 8; y++) {
    for (let x = 4; x < 8; x++) {
      const p = (y * SIZE + x) * 5;
      if (predictedEt) bytes[p] = 255;
      if (truthEt) bytes[p + 4] = 204;
    }
  }
  return bytes;
}

describe('evaluateSegmenter', () => {
  let dir: string;
  before(async () => {
    await selectBackend({ prefer: 'wasm', logger: () => undefined });
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-eval-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('places kept slices at their own z, so a gap counts in HD95', async () => {
    const file = path.join(dir, 'gap.fss');
    const writer = await SliceStoreWriter.create(file, {
      preset: 'cpu16',
      scale: 'max',
      size: SIZE,
      channels: ['t1', 't2', 'flair', 't1ce', 'seg'],
      dtype: 'uint8',
      layout: 'NHWC',
      annotation: { NCR: 51, ED: 102, ET: 204 },
      split: { seed: 0, testFraction: 0.5 },
      createdAt: new Date().toISOString(),
    });
    // Truth ET on z = 10, predicted ET on z = 14 (same pixels); slices 12 and 13 were not kept.
    const slices = [slice(true, false), slice(false, false), slice(false, true)];
    const bytes = new Uint8Array(slices.length * SIZE * SIZE * 5);
    slices.forEach((s, k) => bytes.set(s, k * s.length));
    await writer.addSubject(
      {
        id: 'gap',
        split: 'test',
        labelled: true,
        z: [10, 11, 14],
        sourceDims: [240, 240, 155],
        reference: {},
      },
      bytes,
    );
    await writer.addSubject(
      {
        id: 'train-only',
        split: 'train',
        labelled: true,
        z: [0],
        sourceDims: [240, 240, 155],
        reference: {},
      },
      slice(true, true),
    );
    await writer.close();
    const store = await SliceStoreReader.open(file);
    try {
      const { perSubject, summary } = await evaluateSegmenter(thresholdSegmenter, store);
      assert.equal(summary.subjects, 1, 'only the test split by default');
      const et = perSubject[0]!.labels.ET;
      assert.equal(et.dice, 0);
      assert.equal(et.hd95, 4, '4 slices of 1 mm apart, not the 2 positions apart they have in the store');
      const all = await evaluateSegmenter(thresholdSegmenter, store, { split: 'all' });
      assert.equal(all.summary.subjects, 2);
      assert.equal(all.perSubject.find((s) => s.subject === 'train-only')!.labels.ET.dice, 1);
    } finally {
      await store.close();
    }
  });
});
