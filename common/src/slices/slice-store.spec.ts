import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, truncate, writeFile, access } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  SliceStoreFormatError,
  SliceStoreReader,
  SliceStoreWriter,
  type SliceStoreMetaInit,
} from './slice-store.js';

const init: SliceStoreMetaInit = {
  preset: 'cpu32',
  scale: 'max',
  size: 4,
  channels: ['t1', 't2', 'flair', 't1ce', 'seg'],
  dtype: 'uint8',
  layout: 'NHWC',
  annotation: { NCR: 51, ED: 102, ET: 204 },
  split: { seed: 1, testFraction: 0.5 },
  createdAt: '2026-01-01T00:00:00.000Z',
};
const SLICE = 4 * 4 * 5;

function slicesOf(count: number, first: number): Uint8Array {
  const out = new Uint8Array(count * SLICE);
  for (let n = 0; n < count; n++) out.fill((first + n) * 3, n * SLICE, (n + 1) * SLICE);
  return out;
}

describe('slice store', () => {
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-store-'));
    file = path.join(dir, 'a.fss');
    const writer = await SliceStoreWriter.create(file, init);
    const subject = (id: string, split: 'train' | 'test', z: number[]) => ({
      id,
      split,
      labelled: true,
      z,
      sourceDims: [240, 240, 155] as [number, number, number],
      reference: { t1: 1000 },
    });
    await writer.addSubject(subject('s1', 'train', [10, 11, 12]), slicesOf(3, 0));
    await writer.addSubject(subject('s2', 'test', [40, 41]), slicesOf(2, 3));
    await writer.addSubject({ ...subject('s3', 'train', [5]), labelled: false }, slicesOf(1, 5));
    await writer.close();
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('round-trips slices and metadata, reading only what is asked', async () => {
    const store = await SliceStoreReader.open(file);
    try {
      assert.equal(store.count, 6);
      assert.deepEqual(
        store.meta.subjects.map((s) => [s.id, s.first, s.count]),
        [
          ['s1', 0, 3],
          ['s2', 3, 2],
          ['s3', 5, 1],
        ],
      );
      assert.deepEqual(await store.readRange(0, 6), slicesOf(6, 0));
      const batch = await store.readIndices([4, 0, 5]);
      assert.deepEqual([batch[0], batch[SLICE], batch[2 * SLICE]], [12, 0, 15]);
      assert.deepEqual(store.indicesOf('train'), [0, 1, 2, 5]);
      assert.deepEqual(store.indicesOf('train', { labelledOnly: true }), [0, 1, 2]);
      assert.deepEqual(store.indicesOf('test'), [3, 4]);
      await assert.rejects(store.readRange(5, 2), RangeError);
      await assert.rejects(store.readIndices([6]), RangeError);
    } finally {
      await store.close();
    }
    const size = (await stat(file)).size;
    assert.ok(size > 16 + 6 * SLICE, 'data, metadata and trailer are all there');
  });

  it('refuses files that are not stores, or truncated ones, naming the file', async () => {
    const notStore = path.join(dir, 'x.fss');
    await writeFile(notStore, Buffer.alloc(64, 7));
    await assert.rejects(SliceStoreReader.open(notStore), (e: unknown) => {
      assert.ok(e instanceof SliceStoreFormatError);
      assert.match(e.message, /x\.fss: not a fedsynth slice store/);
      return true;
    });
    const cut = path.join(dir, 'cut.fss');
    await writeFile(cut, await readFile(file));
    await truncate(cut, (await stat(file)).size - 5);
    await assert.rejects(SliceStoreReader.open(cut), /cut\.fss: truncated or unfinished/);
  });

  it('an aborted writer leaves nothing behind', async () => {
    const target = path.join(dir, 'aborted.fss');
    const writer = await SliceStoreWriter.create(target, init);
    await writer.addSubject(
      { id: 's', split: 'train', labelled: true, z: [0], sourceDims: [4, 4, 1], reference: {} },
      slicesOf(1, 0),
    );
    await writer.abort();
    await assert.rejects(access(target));
    await assert.rejects(access(`${target}.partial`));
  });

  it('refuses a subject whose bytes do not match its slice count', async () => {
    const writer = await SliceStoreWriter.create(path.join(dir, 'bad.fss'), init);
    await assert.rejects(
      writer.addSubject(
        { id: 'b', split: 'train', labelled: true, z: [0, 1], sourceDims: [4, 4, 2], reference: {} },
        slicesOf(1, 0),
      ),
      /subject b has 80 bytes for 2 slices of 80/,
    );
    await writer.abort();
  });
});
