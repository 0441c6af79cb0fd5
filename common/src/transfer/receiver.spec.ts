// The receiver on its own (no socket): owners, limits, idempotency, restarts from staging, sweeping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { FileBlobStore } from '../blobstore/file-blob-store.js';
import { ProtocolError } from '../protocol/errors.js';
import type { TransferBegin } from '../protocol/schemas.js';
import { ChunkSet } from './chunks.js';
import { type CommittedTransfer, TransferReceiver } from './receiver.js';
import { sha256Hex, tempDir } from './transfer-spec-helpers.js';

const CHUNK = 4096;

async function setup(
  t: { after(fn: () => Promise<void>): void },
  extra: Partial<ConstructorParameters<typeof TransferReceiver>[0]> = {},
) {
  const dir = await tempDir(t);
  const blobStore = new FileBlobStore(path.join(dir, 'blobs'));
  const stagingDir = path.join(dir, 'staging');
  const make = (more: typeof extra = {}) =>
    new TransferReceiver({ staging: stagingDir, blobStore, ...extra, ...more });
  return { dir, blobStore, stagingDir, receiver: make(), make };
}

function beginMsg(transferId: string, data: Buffer, over: Partial<TransferBegin> = {}): TransferBegin {
  return {
    transferId,
    kind: 'samples',
    size: data.length,
    sha256: sha256Hex(data),
    chunkSize: CHUNK,
    meta: {},
    ...over,
  };
}

function chunkOf(data: Buffer, index: number) {
  return data.subarray(index * CHUNK, Math.min(data.length, (index + 1) * CHUNK));
}

async function rejectsCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof ProtocolError && e.code === code);
}

test('another owner cannot see, feed, commit or abort a transfer', async (t) => {
  const { receiver } = await setup(t);
  const data = randomBytes(10_000);
  await receiver.begin('site-a', beginMsg('transfer-0001', data));
  assert.equal((await receiver.status('site-b', { transferId: 'transfer-0001' })).state, 'unknown');
  await rejectsCode(
    receiver.chunk('site-b', { transferId: 'transfer-0001', index: 0, bytes: chunkOf(data, 0) }),
    'unknown_transfer',
  );
  await rejectsCode(receiver.commit('site-b', { transferId: 'transfer-0001' }), 'unknown_transfer');
  await receiver.abort('site-b', { transferId: 'transfer-0001' });
  assert.equal((await receiver.status('site-a', { transferId: 'transfer-0001' })).state, 'receiving');
  await rejectsCode(receiver.begin('site-b', beginMsg('transfer-0001', data)), 'transfer_conflict');
});

test('limits: size, kinds, transfers in progress per owner', async (t) => {
  const { make } = await setup(t);
  const receiver = make({ maxTransferBytes: 50_000, maxActivePerOwner: 2, acceptKinds: ['samples'] });
  const small = randomBytes(100);
  await rejectsCode(receiver.begin('a', beginMsg('too-large-01', small, { size: 50_001 })), 'too_large');
  await rejectsCode(receiver.begin('a', beginMsg('wrong-kind-01', small, { kind: 'segmenter' })), 'declined');
  await receiver.begin('a', beginMsg('active-0001', small));
  await receiver.begin('a', beginMsg('active-0002', small));
  await assert.rejects(receiver.begin('a', beginMsg('active-0003', small)), (e: unknown) => {
    return e instanceof ProtocolError && e.code === 'too_many_transfers' && e.retryable;
  });
  await receiver.begin('b', beginMsg('active-0004', small)); // per owner
});

test('commit is idempotent and its hook runs at least once, even when it failed the first time', async (t) => {
  let failHook = true;
  const delivered: CommittedTransfer[] = [];
  const { receiver, blobStore } = await setup(t, {
    onCommitted: (c) => {
      if (failHook) {
        failHook = false;
        throw new Error('database down');
      }
      delivered.push(c);
    },
  });
  const data = randomBytes(3 * CHUNK + 5);
  await receiver.begin('a', beginMsg('commit-0001', data, { meta: { round: 2 } }));
  for (let i = 0; i < 4; i++)
    await receiver.chunk('a', { transferId: 'commit-0001', index: i, bytes: chunkOf(data, i) });
  await assert.rejects(receiver.commit('a', { transferId: 'commit-0001' }), /database down/);
  assert.equal(await blobStore.has(sha256Hex(data)), true); // stored; only the hook failed
  const first = await receiver.commit('a', { transferId: 'commit-0001' });
  const second = await receiver.commit('a', { transferId: 'commit-0001' });
  assert.deepEqual(first, second);
  assert.deepEqual(first.blob, { sha256: sha256Hex(data), size: data.length });
  assert.equal(delivered.length, 1);
  assert.deepEqual(delivered[0]!.meta, { round: 2 });
  // chunks after the commit are duplicates; status reports everything held
  assert.deepEqual(
    await receiver.chunk('a', { transferId: 'commit-0001', index: 1, bytes: chunkOf(data, 1) }),
    {
      ok: true,
      index: 1,
      duplicate: true,
    },
  );
  const status = await receiver.status('a', { transferId: 'commit-0001' });
  assert.equal(status.state, 'committed');
  assert.deepEqual(status.received, [[0, 4]]);
  assert.equal(status.receivedBytes, data.length);
});

test('concurrent copies of one chunk write it once; the second waits for the first', async (t) => {
  const { receiver } = await setup(t);
  const data = randomBytes(2 * CHUNK);
  await receiver.begin('a', beginMsg('concurrent-01', data));
  const replies = await Promise.all([
    receiver.chunk('a', { transferId: 'concurrent-01', index: 0, bytes: chunkOf(data, 0) }),
    receiver.chunk('a', { transferId: 'concurrent-01', index: 0, bytes: chunkOf(data, 0) }),
  ]);
  assert.deepEqual(replies.map((r) => r.duplicate).sort(), [false, true]);
  assert.deepEqual((await receiver.status('a', { transferId: 'concurrent-01' })).received, [[0, 1]]);
});

test('a new receiver over the same staging dir knows what arrived, ignoring a torn journal entry', async (t) => {
  const { receiver, make, stagingDir } = await setup(t);
  const data = randomBytes(5 * CHUNK);
  await receiver.begin('a', beginMsg('restart-0001', data));
  for (const i of [0, 1, 3])
    await receiver.chunk('a', { transferId: 'restart-0001', index: i, bytes: chunkOf(data, i) });
  await appendFile(path.join(stagingDir, 'restart-0001.idx'), Buffer.from([2, 0])); // a crash mid-append
  const restarted = make();
  const status = await restarted.status('a', { transferId: 'restart-0001' });
  assert.deepEqual(status.received, [
    [0, 2],
    [3, 4],
  ]);
  assert.deepEqual([...ChunkSet.fromRanges(5, status.received).missing()], [2, 4]);
  for (const i of [2, 4])
    await restarted.chunk('a', { transferId: 'restart-0001', index: i, bytes: chunkOf(data, i) });
  const { blob } = await restarted.commit('a', { transferId: 'restart-0001' });
  assert.equal(blob.sha256, sha256Hex(data));
});

test('an empty transfer commits to the empty blob', async (t) => {
  const { receiver } = await setup(t);
  const empty = Buffer.alloc(0);
  const status = await receiver.begin('a', beginMsg('empty-00001', empty));
  assert.deepEqual(status.received, []);
  const { blob } = await receiver.commit('a', { transferId: 'empty-00001' });
  assert.deepEqual(blob, { sha256: sha256Hex(empty), size: 0 });
});

test('sweep drops abandoned transfers and old tombstones, keeps recent ones', async (t) => {
  let now = Date.now();
  const { make, stagingDir } = await setup(t);
  const receiver = make({ clock: { now: () => now } });
  const data = randomBytes(CHUNK);
  await receiver.begin('a', beginMsg('abandoned-01', data));
  await receiver.begin('a', beginMsg('finished-001', data));
  await receiver.chunk('a', { transferId: 'finished-001', index: 0, bytes: data });
  await receiver.commit('a', { transferId: 'finished-001' });
  assert.deepEqual(await receiver.sweep({ incompleteMs: 60_000, committedMs: 3_600_000 }), []);
  now += 120_000;
  assert.deepEqual(await receiver.sweep({ incompleteMs: 60_000, committedMs: 3_600_000 }), ['abandoned-01']);
  assert.deepEqual(await readdir(stagingDir), ['finished-001.json']);
  assert.equal((await receiver.status('a', { transferId: 'abandoned-01' })).state, 'unknown');
  now += 3_600_000;
  assert.deepEqual(await receiver.sweep({ incompleteMs: 60_000, committedMs: 3_600_000 }), ['finished-001']);
  assert.deepEqual(await readdir(stagingDir), []);
});
