// The local memorization pre-check of the sample handler: samples that copy a private training slice stay on the
// site, the rest is written for upload; all withheld fails with its own code.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { plantedSet, writeCandidateStore } from '@fedsynth/common/audit/index';
import { writeAuditFixtureStores } from '@fedsynth/common/audit/audit-test-stores';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { buildSliceStore, SliceStoreReader } from '@fedsynth/common/slices/index';
import { JobError } from '../job-handlers.js';
import { DEFAULT_PRECHECK_MARGIN, precheckMarginFromEnv, precheckSamples } from './sample.js';

test('the pre-check withholds samples that copy private training slices and keeps the others', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-precheck-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const { privateFile, otherFile } = await writeAuditFixtureStores(root, {
    cases: 5,
    siteSizes: [4, 1],
    seed: 9,
    naming: '2023',
    preset: 'cpu32',
    splitSeed: 1,
  });
  const store = await SliceStoreReader.open(privateFile);
  const other = await SliceStoreReader.open(otherFile);
  const drawn = path.join(root, 'drawn.fss');
  // 10 candidates: 3 perturbed copies of private training slices (indices 0-2), then 7 of another site's slices
  const set = await plantedSet(store, 3, await other.readRange(0, 7), 3, ['noise', 'shift', 'mirror']);
  await writeCandidateStore(drawn, store, set.data);
  const copies = path.join(root, 'copies.fss');
  const allCopies = await plantedSet(store, 3, new Uint8Array(0), 4, ['noise', 'shift', 'mirror']);
  await writeCandidateStore(copies, store, allCopies.data);
  await store.close();
  await other.close();

  const out = path.join(root, 'samples.fss');
  const result = await precheckSamples({
    drawn,
    privateStore: privateFile,
    margin: DEFAULT_PRECHECK_MARGIN,
    out,
  });
  assert.equal(result.drawn, 10);
  assert.deepEqual(result.withheld, [0, 1, 2]);
  assert.equal(result.kept, 10 - result.withheld.length);
  assert.equal(result.file, out);
  const kept = await SliceStoreReader.open(out);
  const source = await SliceStoreReader.open(drawn);
  try {
    assert.equal(kept.count, result.kept);
    const keptIndices = Array.from({ length: 10 }, (_, i) => i).filter((i) => !result.withheld.includes(i));
    assert.deepEqual(
      Buffer.from(await kept.readRange(0, kept.count)),
      Buffer.from(await source.readIndices(keptIndices)),
    );
  } finally {
    await kept.close();
    await source.close();
  }

  await assert.rejects(
    precheckSamples({
      drawn: copies,
      privateStore: privateFile,
      margin: 0.05,
      out: path.join(root, 'none.fss'),
    }),
    (error: unknown) =>
      error instanceof JobError && error.code === 'precheck_withheld_all' && !error.retryable,
  );
});

test('the pre-check margin comes from FEDSYNTH_PRECHECK_MARGIN, else the default', () => {
  assert.equal(precheckMarginFromEnv({}), DEFAULT_PRECHECK_MARGIN);
  assert.equal(precheckMarginFromEnv({ FEDSYNTH_PRECHECK_MARGIN: '0.1' }), 0.1);
  assert.throws(() => precheckMarginFromEnv({ FEDSYNTH_PRECHECK_MARGIN: '2' }), /FEDSYNTH_PRECHECK_MARGIN/);
});

test('the pre-check runs at a site with no held-out subject (leave-one-subject-out reference)', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-precheck-loso-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const manifest = await writePhantomSites({
    out: path.join(root, 'data'),
    sites: 2,
    cases: 5,
    siteSizes: [4, 1],
    seed: 9,
    naming: '2023',
    dims: [200, 200, 100],
  });
  const privateFile = path.join(root, 'private.fss');
  const otherFile = path.join(root, 'other.fss');
  for (const [site, out] of [privateFile, otherFile].entries()) {
    await buildSliceStore({
      dataDir: manifest.sites[site]!.dir,
      out,
      preset: 'cpu32',
      testFraction: 0,
      seed: 1,
    });
  }
  const store = await SliceStoreReader.open(privateFile);
  const other = await SliceStoreReader.open(otherFile);
  const drawn = path.join(root, 'drawn.fss');
  assert.equal(store.indicesOf('test').length, 0);
  const set = await plantedSet(store, 3, await other.readRange(0, 7), 3, ['noise', 'shift', 'mirror']);
  await writeCandidateStore(drawn, store, set.data);
  await store.close();
  await other.close();
  const result = await precheckSamples({
    drawn,
    privateStore: privateFile,
    margin: DEFAULT_PRECHECK_MARGIN,
    out: path.join(root, 'samples.fss'),
  });
  assert.deepEqual(result.withheld, [0, 1, 2]);
  assert.equal(result.kept, 7);
});
