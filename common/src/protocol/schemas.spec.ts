import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  serverToSiteReplySchemas,
  serverToSiteSchemas,
  siteToServerReplySchemas,
  siteToServerSchemas,
} from './events.js';
import { MAX_CHUNK_BYTES } from './limits.js';
import {
  heartbeatSchema,
  jobOfferSchema,
  jobProgressSchema,
  siteHelloSchema,
  transferChunkSchema,
} from './schemas.js';
import { goodHello } from './protocol-spec-helpers.js';

test('every event of both directions has a payload schema and an ack schema', () => {
  const up = [
    'site:hello',
    'heartbeat',
    'job:accept',
    'job:progress',
    'job:result',
    'job:failed',
    'blob:fetch',
  ];
  const down = ['job:offer', 'job:cancel'];
  const transfer = [
    'transfer:begin',
    'transfer:chunk',
    'transfer:status',
    'transfer:commit',
    'transfer:abort',
  ];
  assert.deepEqual(Object.keys(siteToServerSchemas).sort(), [...up, ...transfer].sort());
  assert.deepEqual(Object.keys(siteToServerReplySchemas).sort(), [...up, ...transfer].sort());
  assert.deepEqual(Object.keys(serverToSiteSchemas).sort(), [...down, ...transfer].sort());
  assert.deepEqual(Object.keys(serverToSiteReplySchemas).sort(), [...down, ...transfer].sort());
});

test('hello: counts only; a case id, a path or an unknown backend is refused', () => {
  assert.equal(siteHelloSchema.safeParse(goodHello).success, true);
  const withCases = { ...goodHello, dataset: { ...goodHello.dataset, caseIds: ['BraTS2021_00000'] } };
  assert.equal(siteHelloSchema.safeParse(withCases).success, false);
  assert.equal(siteHelloSchema.safeParse({ ...goodHello, dataDir: '/data/brats' }).success, false);
  const badBackend = { ...goodHello, capabilities: { ...goodHello.capabilities, backends: ['cuda-magic'] } };
  assert.equal(siteHelloSchema.safeParse(badBackend).success, false);
  const negative = { ...goodHello, dataset: { ...goodHello.dataset, slices: -1 } };
  assert.equal(siteHelloSchema.safeParse(negative).success, false);
});

test('jobs: kinds, attempts, bounded payloads', () => {
  const offer = {
    job: {
      id: 'job-1',
      kind: 'train-round',
      attempt: 1,
      leaseExpiresAt: 1_700_000_000_000,
      payload: { round: 3, lr: 0.01 },
    },
  };
  assert.equal(jobOfferSchema.safeParse(offer).success, true);
  assert.equal(jobOfferSchema.safeParse({ job: { ...offer.job, kind: 'mine-bitcoin' } }).success, false);
  assert.equal(jobOfferSchema.safeParse({ job: { ...offer.job, attempt: 0 } }).success, false);
  assert.equal(jobOfferSchema.safeParse({ job: { ...offer.job, payload: { f: () => 1 } } }).success, false);
  assert.equal(jobProgressSchema.safeParse({ jobId: 'job-1', attempt: 1, fraction: 1.5 }).success, false);
  assert.equal(
    jobProgressSchema.safeParse({ jobId: 'job-1', attempt: 1, fraction: 0.5, metrics: { dice: NaN } })
      .success,
    false,
  );
  assert.equal(
    heartbeatSchema.safeParse({ seq: 1, sentAt: Date.now(), activeJobs: [{ jobId: 'job-1', attempt: 2 }] })
      .success,
    true,
  );
});

test('chunk bytes: Buffer, Uint8Array or ArrayBuffer in, a Buffer out, at most 1 MiB', () => {
  const base = { transferId: 'abcdefgh', index: 0 };
  const fromU8 = transferChunkSchema.parse({ ...base, bytes: new Uint8Array([1, 2, 3]) });
  assert.ok(Buffer.isBuffer(fromU8.bytes));
  assert.deepEqual([...fromU8.bytes], [1, 2, 3]);
  const fromAB = transferChunkSchema.parse({ ...base, bytes: new Uint8Array([4, 5]).buffer });
  assert.deepEqual([...fromAB.bytes], [4, 5]);
  assert.equal(
    transferChunkSchema.safeParse({ ...base, bytes: Buffer.alloc(MAX_CHUNK_BYTES) }).success,
    true,
  );
  assert.equal(
    transferChunkSchema.safeParse({ ...base, bytes: Buffer.alloc(MAX_CHUNK_BYTES + 1) }).success,
    false,
  );
  assert.equal(transferChunkSchema.safeParse({ ...base, bytes: [1, 2, 3] }).success, false);
});

test('replies: ok with its fields, or the error shape', () => {
  const commit = siteToServerReplySchemas['transfer:commit'];
  assert.equal(
    commit.safeParse({ ok: true, transferId: 'abcdefgh', blob: { sha256: 'a'.repeat(64), size: 1 } }).success,
    true,
  );
  assert.equal(commit.safeParse({ ok: false, code: 'sha_mismatch', message: 'no' }).success, true);
  assert.equal(commit.safeParse({ ok: true }).success, false);
  assert.equal(commit.safeParse({ ok: false }).success, false);
  assert.equal(commit.safeParse('ok').success, false);
});

test('additions for resuming and downloads: hello inFlight, ack jobs, job inputs, blob:fetch, leaseLost', () => {
  const inFlight = [{ jobId: 'job-1', attempt: 2, state: 'uploading' }];
  assert.equal(siteHelloSchema.safeParse({ ...goodHello, inFlight }).success, true);
  assert.equal(siteHelloSchema.safeParse(goodHello).success, true, 'inFlight is optional');
  assert.equal(
    siteHelloSchema.safeParse({ ...goodHello, inFlight: [{ ...inFlight[0], state: 'paused' }] }).success,
    false,
  );
  assert.equal(
    siteHelloSchema.safeParse({ ...goodHello, inFlight: [{ ...inFlight[0], caseId: 'BraTS2021_00000' }] })
      .success,
    false,
  );
  const hello = siteToServerReplySchemas['site:hello'];
  const ack = { ok: true, protocolVersion: 1, siteId: 's', serverTime: 1, heartbeatIntervalMs: 15000 };
  assert.equal(hello.safeParse(ack).success, true, 'an older coordinator omits jobs');
  assert.equal(
    hello.safeParse({ ...ack, jobs: [{ jobId: 'job-1', attempt: 2, action: 'resume', leaseExpiresAt: 5 }] })
      .success,
    true,
  );
  assert.equal(
    hello.safeParse({ ...ack, jobs: [{ jobId: 'job-1', attempt: 2, action: 'maybe' }] }).success,
    false,
  );
  assert.equal(
    siteToServerReplySchemas.heartbeat.safeParse({ ok: true, serverTime: 1, leaseLost: ['job-1'] }).success,
    true,
  );

  const sha256 = 'c'.repeat(64);
  const job = { id: 'job-1', kind: 'echo-upload', attempt: 1, leaseExpiresAt: 1, payload: { bytes: 10 } };
  assert.equal(
    jobOfferSchema.safeParse({ job: { ...job, inputs: [{ role: 'weights', sha256, size: 3 }] } }).success,
    true,
  );
  assert.equal(
    jobOfferSchema.safeParse({ job: { ...job, inputs: [{ role: 'weights', sha256, size: 3, path: '/x' }] } })
      .success,
    false,
  );
  const fetch = siteToServerSchemas['blob:fetch'];
  assert.equal(fetch.safeParse({ jobId: 'job-1', attempt: 1, sha256 }).success, true);
  assert.equal(fetch.safeParse({ jobId: 'job-1', attempt: 1, sha256: 'C'.repeat(64) }).success, false);
  assert.equal(
    siteToServerReplySchemas['blob:fetch'].safeParse({
      ok: true,
      transferId: 'dl-abcdef12',
      blob: { sha256, size: 3 },
    }).success,
    true,
  );
});
