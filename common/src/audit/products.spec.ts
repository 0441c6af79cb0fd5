import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { writePhantomSites } from '../phantom/index.js';
import { buildSliceStore } from '../slices/slice-pipeline.js';
import { SliceStoreReader } from '../slices/slice-store.js';
import { PrivateIndex, resolveSettings, scoreQueries } from './audit.js';
import { coarseTopK, type ExcludedGroups, type TopK } from './coarse-search.js';
import { jsKernel, productKernel, tfjsKernel, type ProductKernel } from './products.js';
import { allocQueries, centringShift, imageOf, prepareQuery, AUDIT_CHANNELS } from './vectors.js';

describe('coarse product kernels: blocks of private rows', () => {
  let root: string;
  let storeFile: string;
  let fast: boolean;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-products-'));
    const manifest = await writePhantomSites({
      out: path.join(root, 'data'),
      sites: 1,
      cases: 3,
      seed: 5,
      naming: '2021',
      dims: [200, 200, 100],
    });
    storeFile = path.join(root, 'private.fss');
    await buildSliceStore({
      dataDir: manifest.sites[0]!.dir,
      out: storeFile,
      preset: 'cpu64',
      testFraction: 0,
    });
    // The audit's own choice (wasm here, native where installed); a test run left on 'cpu' still checks blocking.
    fast = (await productKernel('auto')).name !== 'js';
  });
  after(async () => rm(root, { recursive: true, force: true }));

  it('gives the same top k with small blocks (resident or per call) as with one block and as the JS loops', async () => {
    const store = await SliceStoreReader.open(storeFile);
    try {
      const train = store.indicesOf('train');
      const geometry = { size: store.meta.size, channels: store.meta.channels.length };
      const coarseSize = 16;
      const factor = geometry.size / coarseSize;
      const pixels = coarseSize * coarseSize;
      // Queries: every 3rd private slice (each finds itself) and a few slices flipped upside down (no copy).
      const ids = train.filter((_, i) => i % 3 === 0);
      const data = await store.readIndices(ids);
      const queries = allocQueries(pixels, ids.length);
      const img = new Float32Array(pixels * AUDIT_CHANNELS);
      for (let k = 0; k < ids.length; k++) {
        const [dx, dy] = centringShift(data, k, geometry);
        imageOf(data, k, geometry, { factor, dx, dy }, img);
        if (k % 5 === 4) img.reverse();
        queries.n[k] = prepareQuery(img, pixels, queries.centred, queries.mask, k);
      }
      const subjectOf = (index: number) =>
        store.meta.subjects.findIndex((s) => index >= s.first && index < s.first + s.count);
      const index = await PrivateIndex.build(store, train, coarseSize);
      const rowCount = index.coarse.count;
      assert.ok(rowCount > 150, `${rowCount} private rows`);
      const exclude: ExcludedGroups = {
        rows: Int32Array.from({ length: rowCount }, (_, r) => subjectOf(train[r % train.length]!)),
        queries: Int32Array.from(ids, (id, k) => (k % 2 === 0 ? subjectOf(id) : -1)),
      };
      const run = (kernel: ProductKernel, groups?: ExcludedGroups): TopK[] => {
        const before = tf.memory().numTensors;
        const held = kernel.holdPrivates(index.coarse);
        try {
          return coarseTopK(queries, held, 7, kernel, groups);
        } finally {
          held.dispose();
          assert.equal(tf.memory().numTensors, before, `${kernel.name}: every tensor freed`);
        }
      };
      const kernels: Array<[string, ProductKernel]> = [['js', jsKernel]];
      if (fast) {
        kernels.push(
          ['one block', tfjsKernel({ blockRows: rowCount })],
          ['blocks of 37, resident', tfjsKernel({ blockRows: 37 })],
          ['blocks of 37, per call', tfjsKernel({ blockRows: 37, residentBytes: 0 })],
        );
      }
      for (const groups of [undefined, exclude]) {
        const results = kernels.map(([label, kernel]) => [label, run(kernel, groups)] as const);
        const [, reference] = results[results.length - 1 === 0 ? 0 : 1]!;
        for (const [label, tops] of results) {
          const tol = label === 'js' ? 1e-4 : 1e-6;
          tops.forEach((top, q) => {
            const want = reference[q]!;
            assert.equal(top.length, want.length);
            for (let t = 0; t < top.length; t++) {
              assert.ok(Math.abs(top.scores[t]! - want.scores[t]!) <= tol, `${label} q${q} #${t}`);
              // rows agree unless two candidates tie within rounding
              const gap = Math.min(
                t > 0 ? want.scores[t - 1]! - want.scores[t]! : Infinity,
                t + 1 < want.length ? want.scores[t]! - want.scores[t + 1]! : Infinity,
              );
              if (gap > 2 * tol) assert.equal(top.rows[t], want.rows[t], `${label} q${q} #${t}`);
            }
            if (groups && groups.queries[q]! >= 0)
              for (let t = 0; t < top.length; t++)
                assert.notEqual(groups.rows[top.rows[t]!], groups.queries[q]);
          });
          if (!groups) {
            // a private slice finds itself (not flipped): row = its position in train
            tops.forEach((top, q) => {
              if (q % 5 !== 4) assert.ok(top.scores[0]! > 0.9999, `${label} q${q} finds itself`);
            });
          }
        }
      }
      if (fast) {
        // The whole-matrix convenience agrees block for block.
        const small = tfjsKernel({ blockRows: 50, residentBytes: 0 });
        const held = small.holdPrivates(index.coarse);
        const whole = tfjsKernel({ blockRows: rowCount });
        const heldWhole = whole.holdPrivates(index.coarse);
        const a = small.scores(queries, held);
        const b = whole.scores(queries, heldWhole);
        held.dispose();
        heldWhole.dispose();
        assert.equal(a.length, ids.length * rowCount);
        for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-6, `entry ${i}`);
      }
      index.dispose();

      // The whole audit search (coarse then exact) matches with a blocked kernel and with the JS loops.
      const settings = resolveSettings(store.meta.size, { margin: 0, coarseSize });
      const matches = await Promise.all(
        (fast ? [jsKernel, tfjsKernel({ blockRows: 29, residentBytes: 0 })] : [jsKernel]).map(
          async (kernel) => {
            const idx = await PrivateIndex.build(store, train, coarseSize, undefined, kernel);
            try {
              return await scoreQueries(data, ids.length, geometry, idx, settings);
            } finally {
              idx.dispose();
            }
          },
        ),
      );
      for (const m of matches.slice(1))
        m.forEach((x, q) => {
          assert.ok(Math.abs(x.score - matches[0]![q]!.score) < 1e-5, `query ${q}`);
        });
    } finally {
      await store.close();
    }
  });
});
