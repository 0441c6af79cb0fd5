import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { plantedSet, readLocalAuditRecords, writeCandidateStore } from '@fedsynth/common/audit/index';
import { auditScoresSchema } from '@fedsynth/common/protocol/job-payloads';
import { writeAuditFixtureStores } from '@fedsynth/common/audit/audit-test-stores';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { buildSliceStore, SliceStoreReader } from '@fedsynth/common/slices/index';
import { JobError, type JobContext, type UploadSource } from '../job-handlers.js';
import { silentLogger } from '../logger.js';
import { createAuditHandler } from './audit.js';

test('the audit handler uploads scores only, flags planted copies and keeps the nearest slices locally', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-audit-job-'));
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
  const pool = path.join(root, 'pool.fss');
  const set = await plantedSet(store, 10, await other.readRange(0, other.count), 3);
  await writeCandidateStore(pool, store, set.data);
  await store.close();
  await other.close();

  const stateDir = path.join(root, 'state');
  const uploads: Array<{ data: Buffer; role: string; kind?: string }> = [];
  const progress: number[] = [];
  const ctx = (payload: unknown): JobContext => ({
    job: { id: 'job-a', kind: 'audit', attempt: 1, leaseExpiresAt: 0, payload: payload as never },
    signal: new AbortController().signal,
    workDir: path.join(stateDir, 'work', 'job-a'),
    log: silentLogger,
    progress: (f) => progress.push(f),
    upload: async (source: UploadSource, options) => {
      const data = 'file' in source ? await readFile(source.file) : source.buffer;
      uploads.push({ data, role: options.role, kind: options.kind });
      return {
        role: options.role,
        sha256: createHash('sha256').update(data).digest('hex'),
        size: data.length,
      };
    },
    download: async (input) => {
      assert.equal(input, 'audit-pool');
      return pool;
    },
    privateSlices: async (size) => {
      assert.equal(size, 32);
      return privateFile;
    },
  });
  const handler = createAuditHandler();
  const outcome = await handler(ctx({ studyId: 's1', auditId: 'a1', margin: 0.05 }));
  assert.equal(uploads.length, 1);
  assert.equal(uploads[0]!.role, 'scores');
  assert.equal(uploads[0]!.kind, 'job-output');
  const scores = auditScoresSchema.parse(JSON.parse(uploads[0]!.data.toString('utf8')));
  assert.equal(scores.referenceKind, 'held-out');
  assert.equal(scores.scores.length, set.planted + set.fresh);
  for (let i = 0; i < set.planted; i++) assert.ok(scores.flagged.includes(i), `planted ${i} flagged`);
  assert.ok(scores.flagged.every((i) => scores.scores[i]! > scores.threshold));
  assert.deepEqual(outcome.metrics, {
    candidates: scores.scores.length,
    flagged: scores.flagged.length,
    threshold: scores.threshold,
  });
  assert.equal(progress.at(-1), 1);
  // Nothing but numbers went up; the nearest private slices stay in the state dir.
  assert.deepEqual(Object.keys(JSON.parse(uploads[0]!.data.toString('utf8'))).sort(), [
    'flagged',
    'format',
    'reference',
    'referenceKind',
    'scores',
    'threshold',
    'version',
  ]);
  const [record] = await readLocalAuditRecords(stateDir);
  assert.equal(record!.auditId, 'a1');
  assert.deepEqual(
    record!.flagged.map((f) => f.candidate),
    scores.flagged,
  );
  const traced = record!.flagged.filter(
    (f) => f.candidate < set.planted && f.privateIndex === set.sources[f.candidate]!.privateIndex,
  );
  assert.ok(traced.length >= 9, `${traced.length}/10 planted copies traced to their source slice`);

  await assert.rejects(handler(ctx({ studyId: 's1', auditId: 'a1', margin: 2 })), JobError);
});

test('a site with no held-out subject audits with the leave-one-subject-out reference; one subject fails clearly', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-audit-loso-job-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const manifest = await writePhantomSites({
    out: path.join(root, 'data'),
    sites: 3,
    cases: 6,
    siteSizes: [4, 1, 1],
    seed: 12,
    naming: '2023',
    dims: [200, 200, 100],
  });
  const stores = ['private', 'other', 'single'].map((name) => path.join(root, `${name}.fss`));
  // testFraction 0: a small site whose subject split drew no held-out subject.
  for (const [site, out] of stores.entries()) {
    await buildSliceStore({
      dataDir: manifest.sites[site]!.dir,
      out,
      preset: 'cpu32',
      testFraction: 0,
      seed: 1,
    });
  }
  const [privateFile, otherFile, singleFile] = stores as [string, string, string];
  const store = await SliceStoreReader.open(privateFile);
  const other = await SliceStoreReader.open(otherFile);
  const pool = path.join(root, 'pool.fss');
  const set = await plantedSet(store, 10, await other.readRange(0, other.count), 5);
  await writeCandidateStore(pool, store, set.data);
  await store.close();
  await other.close();

  const stateDir = path.join(root, 'state');
  const uploads: Buffer[] = [];
  const ctx = (privateStore: string): JobContext => ({
    job: {
      id: 'job-b',
      kind: 'audit',
      attempt: 1,
      leaseExpiresAt: 0,
      payload: { studyId: 's1', auditId: 'a2', margin: 0.05 } as never,
    },
    signal: new AbortController().signal,
    workDir: path.join(stateDir, 'work', 'job-b'),
    log: silentLogger,
    progress: () => undefined,
    upload: async (source: UploadSource, options) => {
      const data = 'file' in source ? await readFile(source.file) : source.buffer;
      uploads.push(data);
      return {
        role: options.role,
        sha256: createHash('sha256').update(data).digest('hex'),
        size: data.length,
      };
    },
    download: async () => pool,
    privateSlices: async () => privateStore,
  });
  const handler = createAuditHandler();
  await handler(ctx(privateFile));
  const scores = auditScoresSchema.parse(JSON.parse(uploads[0]!.toString('utf8')));
  assert.equal(scores.referenceKind, 'leave-one-subject-out');
  assert.ok(scores.reference.length > 0);
  for (let i = 0; i < set.planted; i++) assert.ok(scores.flagged.includes(i), `planted ${i} flagged`);
  const freshFlagged = scores.flagged.filter((i) => i >= set.planted).length;
  assert.ok(freshFlagged <= Math.floor(0.01 * set.fresh), `${freshFlagged}/${set.fresh} fresh flagged`);

  await assert.rejects(
    handler(ctx(singleFile)),
    (error: unknown) =>
      error instanceof JobError &&
      error.code === 'no_unseen_reference' &&
      /single training subject/.test(error.message) &&
      !error.message.includes(root),
  );
  assert.equal(uploads.length, 1, 'nothing uploaded when the audit cannot run');
});
