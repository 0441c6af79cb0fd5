// Transfers over a real socket.io server and client on 127.0.0.1, with real files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { FileBlobStore } from '../blobstore/file-blob-store.js';
import {
  DEFAULT_CHUNK_BYTES,
  MAX_CHUNK_BYTES,
  RECOMMENDED_MAX_HTTP_BUFFER_SIZE,
} from '../protocol/limits.js';
import { socketAckEmitter } from './ack-emitter.js';
import { blobChunkSource, bufferChunkSource, fileChunkSource } from './chunk-source.js';
import type { TransferProgress } from './progress.js';
import { type CommittedTransfer, TransferReceiver, attachTransferReceiver } from './receiver.js';
import { TransferSender } from './sender.js';
import { TransferError } from './transfer-error.js';
import {
  type ChunkMessage,
  type CoordinatorSideSocket,
  type SiteSocket,
  type TestServer,
  connectSite,
  interceptingEmitter,
  sha256Hex,
  startServer,
  tempDir,
  writeRandomFile,
} from './transfer-spec-helpers.js';

const MiB = 1024 * 1024;
type TestContext = { after(fn: () => Promise<void> | void): void; diagnostic(msg: string): void };

interface Federation {
  dir: string;
  blobStore: FileBlobStore;
  stagingDir: string;
  receiver: TransferReceiver;
  server: TestServer;
  /** every transfer:chunk the coordinator got: index and byte length */
  seen: Array<{ index: number; length: number }>;
  /** every event the coordinator got, in order */
  events: string[];
  committed: CommittedTransfer[];
  connect(): Promise<SiteSocket>;
}

async function federation(t: TestContext, dir?: string): Promise<Federation> {
  dir ??= await tempDir(t);
  const blobStore = new FileBlobStore(path.join(dir, 'blobs'));
  const stagingDir = path.join(dir, 'staging');
  const committed: CommittedTransfer[] = [];
  const receiver = new TransferReceiver({
    staging: stagingDir,
    blobStore,
    acceptKinds: ['samples', 'generator-weights', 'round-update'],
    onCommitted: (c) => {
      committed.push(c);
    },
  });
  const seen: Federation['seen'] = [];
  const events: string[] = [];
  const server = await startServer((socket: CoordinatorSideSocket) => {
    socket.onAny((event: string, msg: { index?: number; bytes?: unknown }) => {
      events.push(event);
      if (event === 'transfer:chunk' && Buffer.isBuffer(msg?.bytes)) {
        seen.push({ index: msg.index ?? -1, length: msg.bytes.length });
      }
    });
    attachTransferReceiver(socket, receiver, { owner: 'site-alpha' });
  });
  t.after(() => server.close());
  const connect = async () => {
    const c = await connectSite(server.url);
    t.after(() => {
      c.close();
    });
    return c;
  };
  return { dir, blobStore, stagingDir, receiver, server, seen, events, committed, connect };
}

async function listBlobs(store: FileBlobStore): Promise<string[]> {
  const out: string[] = [];
  for await (const ref of store.list()) out.push(ref.sha256);
  return out;
}

/** A raw, untyped emit: for payloads the typed map would not let us write. */
function rawEmit(
  socket: SiteSocket,
  event: string,
  payload: unknown,
): Promise<{ ok: boolean; code?: string; message?: string }> {
  return (
    socket as unknown as { timeout(ms: number): { emitWithAck(e: string, p: unknown): Promise<never> } }
  )
    .timeout(5000)
    .emitWithAck(event, payload);
}

test('a 10 MiB file arrives whole, in chunks under the limits, and is stored under its sha256', async (t) => {
  const f = await federation(t);
  const file = path.join(f.dir, 'samples.bin');
  const sha = await writeRandomFile(file, 10 * MiB);
  const client = await f.connect();
  const progress: TransferProgress[] = [];
  const sender = new TransferSender({ onProgress: (p) => progress.push(p) });
  const source = await fileChunkSource(file);
  t.after(() => source.close());
  const started = performance.now();
  const result = await sender.send(socketAckEmitter(client), source, {
    kind: 'samples',
    meta: { study: 's1' },
  });
  const ms = performance.now() - started;
  t.diagnostic(`10 MiB site → coordinator in ${ms.toFixed(0)} ms: ${(10 / (ms / 1000)).toFixed(0)} MiB/s`);

  assert.deepEqual(result.blob, { sha256: sha, size: 10 * MiB });
  assert.equal(await f.blobStore.verify(sha), true);
  // a new transfer is announced first, committed last
  assert.deepEqual(
    [f.events[0], f.events[1], f.events.at(-1)],
    ['transfer:begin', 'transfer:chunk', 'transfer:commit'],
  );
  assert.deepEqual(await listBlobs(f.blobStore), [sha]);
  assert.equal(f.server.io.engine.opts.maxHttpBufferSize, RECOMMENDED_MAX_HTTP_BUFFER_SIZE);
  assert.ok(DEFAULT_CHUNK_BYTES <= 1_000_000 && DEFAULT_CHUNK_BYTES <= MAX_CHUNK_BYTES);
  assert.equal(f.seen.length, Math.ceil((10 * MiB) / DEFAULT_CHUNK_BYTES));
  assert.ok(f.seen.every((c) => c.length <= DEFAULT_CHUNK_BYTES));
  assert.equal(result.chunksSent, f.seen.length);
  assert.equal(progress.at(-1)!.bytesDone, 10 * MiB);
  assert.equal(progress.at(-1)!.chunksDone, f.seen.length);
  assert.ok(progress.at(-1)!.bytesPerSecond > 0);
  assert.deepEqual(f.committed, [
    {
      owner: 'site-alpha',
      transferId: result.transferId,
      kind: 'samples',
      meta: { study: 's1' },
      blob: result.blob,
    },
  ]);
  // the staging area keeps only the commit's tombstone
  assert.deepEqual(await readdir(f.stagingDir), [`${result.transferId}.json`]);

  // committing again (a lost ack) answers the same address, and a whole resend is a no-op
  const again = await sender.send(socketAckEmitter(client), source, {
    kind: 'samples',
    transferId: result.transferId,
  });
  assert.deepEqual(again.blob, result.blob);
  assert.equal(again.chunksSent, 0);
  const commit2 = await rawEmit(client, 'transfer:commit', { transferId: result.transferId });
  assert.deepEqual(commit2, { ok: true, transferId: result.transferId, blob: result.blob });
  assert.equal(f.committed.length, 1);

  // the server's small maxHttpBufferSize is in force: one 2.5 MB message ends the connection
  const big = await f.connect();
  const closed = new Promise<string>((resolve) => big.once('disconnect', resolve));
  big.emit(
    'transfer:chunk',
    { transferId: 'x'.repeat(8), index: 0, bytes: Buffer.alloc(2_500_000) },
    () => undefined,
  );
  assert.equal(await closed, 'transport close');
});

test('the coordinator sends a stored blob down to a site (the other direction, same code)', async (t) => {
  const dir = await tempDir(t);
  const coordinatorStore = new FileBlobStore(path.join(dir, 'coordinator-blobs'));
  const weights = randomBytes(3 * MiB + 12345);
  const ref = await coordinatorStore.putStream(Readable.from([weights]));
  const siteStore = new FileBlobStore(path.join(dir, 'site-blobs'));
  const siteReceiver = new TransferReceiver({
    staging: path.join(dir, 'site-staging'),
    blobStore: siteStore,
    acceptKinds: ['global-weights', 'segmenter', 'audit-pool'],
  });
  // Send only once BOTH ends are ready: the server sees the connection before the site's client has attached
  // its receiver, and an event that arrives before a listener exists is dropped (no ack: a 30 s timeout).
  let serverSocket!: CoordinatorSideSocket;
  const server = await startServer((s) => {
    serverSocket = s;
  });
  t.after(() => server.close());
  const site = await connectSite(server.url);
  t.after(() => {
    site.close();
  });
  attachTransferReceiver(site, siteReceiver, { owner: 'coordinator' });
  const socket = serverSocket;
  const sender = new TransferSender({ chunkSize: 512 * 1024 });
  const result = await sender.send(socketAckEmitter(socket), blobChunkSource(coordinatorStore, ref), {
    kind: 'global-weights',
    meta: { round: 3 },
  });
  assert.deepEqual(result.blob, ref);
  assert.equal(await siteStore.verify(ref.sha256), true);
  // a site refuses kinds that only flow upwards
  await assert.rejects(
    sender.send(socketAckEmitter(socket), bufferChunkSource(Buffer.from('x'.repeat(5000))), {
      kind: 'samples',
    }),
    (e: unknown) => e instanceof TransferError && e.peerCode === 'declined',
  );
});

test('drop mid-transfer: a new socket resumes from the last acknowledged chunk, not from zero', async (t) => {
  const f = await federation(t);
  const file = path.join(f.dir, 'weights.bin');
  const size = 10 * MiB + 777;
  const sha = await writeRandomFile(file, size);
  const chunkSize = 256 * 1024;
  const total = Math.ceil(size / chunkSize); // 41
  let current: SiteSocket | undefined;
  let dropped = false;
  let connections = 0;
  const sender = new TransferSender({
    chunkSize,
    window: 4,
    backoff: { initialMs: 20 },
    onProgress: (p) => {
      if (!dropped && p.chunksDone >= 12) {
        dropped = true;
        current!.io.engine.close(); // the transport dies under the socket, as when a network drops
      }
    },
  });
  const source = await fileChunkSource(file);
  t.after(() => source.close());
  const result = await sender.sendResumable(
    async () => {
      connections++;
      current = await f.connect();
      return socketAckEmitter(current);
    },
    source,
    { kind: 'generator-weights' },
  );

  assert.equal(dropped, true);
  assert.equal(connections, 2);
  assert.equal(result.attempts, 2);
  assert.deepEqual(result.blob, { sha256: sha, size });
  assert.equal(await f.blobStore.verify(sha), true);
  // the second attempt started where the receiver was: at least the 12 acknowledged chunks were not sent again
  assert.ok(result.resumedFromBytes >= 12 * chunkSize, `resumed from ${result.resumedFromBytes}`);
  assert.ok(result.chunksSent <= total + 4, `${result.chunksSent} chunk messages for ${total} chunks`);
  assert.equal(f.seen.filter((c) => c.index === 0).length, 1, 'chunk 0 was sent once');
  // the second connection asked what the receiver holds before sending anything
  const resumedAt = f.events.indexOf('transfer:status');
  assert.ok(resumedAt > 12 && f.events.slice(resumedAt + 1).every((e) => e !== 'transfer:begin'));
  assert.equal(new Set(f.seen.map((c) => c.index)).size, total);
});

test('a restarted sender with another chunk size resumes a transfer in the chunk size it began with', async (t) => {
  const dir = await tempDir(t);
  const f = await federation(t, dir);
  const file = path.join(dir, 'weights.bin');
  const size = 3 * MiB;
  const sha = await writeRandomFile(file, size);
  const first = 64 * 1024;
  const transferId = crypto.randomUUID();
  const stop = new AbortController();
  const killed = new TransferSender({
    chunkSize: first,
    window: 1,
    onProgress: (p) => {
      if (p.chunksDone >= 10) stop.abort(); // the sending process dies part-way
    },
  });
  const source = await fileChunkSource(file);
  t.after(() => source.close());
  const emitter = socketAckEmitter(await f.connect());
  await assert.rejects(
    killed.send(emitter, source, { transferId, kind: 'round-update', signal: stop.signal }),
    (err: unknown) => err instanceof TransferError && err.code === 'aborted',
  );
  const before = f.seen.length;
  assert.ok(before >= 10 && before < size / first, `${before} chunks before the restart`);

  // the restarted sender is configured with 4x the chunk size; it asks transfer:status and follows the receiver
  const restarted = new TransferSender({ chunkSize: 4 * first, window: 2 });
  const result = await restarted.sendResumable(async () => socketAckEmitter(await f.connect()), source, {
    transferId,
    kind: 'round-update',
  });
  assert.deepEqual(result.blob, { sha256: sha, size });
  assert.equal(await f.blobStore.verify(sha), true);
  assert.ok(result.resumedFromBytes >= 10 * first, `resumed from ${result.resumedFromBytes}`);
  const after = f.seen.slice(before);
  assert.ok(after.length > 0 && after.every((c) => c.length === first), 'the rest in the first chunk size');
  assert.equal(new Set(f.seen.map((c) => c.index)).size, size / first, 'every chunk index once at least');
  assert.ok(
    after.every((c) => c.index >= 10),
    'acknowledged chunks are not sent again',
  );
});

test('a restarted receiver (new process, same state dir) resumes the transfer', async (t) => {
  const dir = await tempDir(t);
  const first = await federation(t, dir);
  const file = path.join(dir, 'round-update.bin');
  const size = 6 * MiB;
  const sha = await writeRandomFile(file, size);
  const chunkSize = 128 * 1024;
  let stopped = false;
  let second: Federation | undefined;
  const sender = new TransferSender({
    chunkSize,
    window: 2,
    backoff: { initialMs: 20 },
    onProgress: (p) => {
      if (!stopped && p.chunksDone >= 10) {
        stopped = true;
        void first.server.close(); // the coordinator goes down
      }
    },
  });
  const source = await fileChunkSource(file);
  t.after(() => source.close());
  const result = await sender.sendResumable(
    async () => {
      if (!stopped) return socketAckEmitter(await first.connect());
      second ??= await federation(t, dir); // a new receiver instance over the same staging dir and blob store
      return socketAckEmitter(await second.connect());
    },
    source,
    { kind: 'round-update' },
  );

  assert.ok(second, 'the transfer finished on the second coordinator');
  assert.deepEqual(result.blob, { sha256: sha, size });
  assert.ok(result.resumedFromBytes >= 10 * chunkSize, `resumed from ${result.resumedFromBytes}`);
  assert.ok(
    second.seen.length <= size / chunkSize - 10 + 2,
    `${second.seen.length} chunks after the restart`,
  );
  assert.equal(
    second.seen.some((c) => c.index === 0),
    false,
  );
  assert.equal(await second.blobStore.verify(sha), true);
  assert.equal(second.committed.length, 1);
});

test('retransmitted chunks are idempotent: acked as duplicates, never rewritten', async (t) => {
  const f = await federation(t);
  const client = await f.connect();
  const data = randomBytes(300_000);
  const replies: Array<{ index: number; duplicate: boolean }> = [];
  const emitter = socketAckEmitter(client);
  const doubling = {
    async emitWithAck(event: string, payload: unknown, timeoutMs: number) {
      const first = await emitter.emitWithAck(event, payload, timeoutMs);
      if (event !== 'transfer:chunk') return first;
      const second = (await emitter.emitWithAck(event, payload, timeoutMs)) as {
        index: number;
        duplicate: boolean;
      };
      replies.push(first as { index: number; duplicate: boolean }, second);
      return second;
    },
  };
  const result = await new TransferSender({ chunkSize: 64 * 1024 }).send(doubling, bufferChunkSource(data), {
    kind: 'samples',
  });
  assert.equal(result.blob.sha256, sha256Hex(data));
  assert.equal(replies.length, 10);
  assert.deepEqual(
    replies.map((r) => r.duplicate),
    [false, true, false, true, false, true, false, true, false, true],
  );

  // a retransmission with different bytes under an index already held does not overwrite it
  const transferId = 'dup-test-0001';
  const content = randomBytes(8192);
  await rawEmit(client, 'transfer:begin', {
    transferId,
    kind: 'samples',
    size: content.length,
    sha256: sha256Hex(content),
    chunkSize: 4096,
    meta: {},
  });
  assert.deepEqual(
    await rawEmit(client, 'transfer:chunk', { transferId, index: 0, bytes: content.subarray(0, 4096) }),
    {
      ok: true,
      index: 0,
      duplicate: false,
    },
  );
  assert.deepEqual(
    await rawEmit(client, 'transfer:chunk', { transferId, index: 0, bytes: Buffer.alloc(4096, 7) }),
    {
      ok: true,
      index: 0,
      duplicate: true,
    },
  );
  await rawEmit(client, 'transfer:chunk', { transferId, index: 1, bytes: content.subarray(4096) });
  const commit = await rawEmit(client, 'transfer:commit', { transferId });
  assert.equal(commit.ok, true);
  assert.equal(await f.blobStore.verify(sha256Hex(content)), true);
});

test('a corrupted chunk: the commit fails its sha256 check with a clear error and nothing is stored', async (t) => {
  const f = await federation(t);
  const client = await f.connect();
  const data = randomBytes(200_000);
  const corrupt = interceptingEmitter(socketAckEmitter(client), (event, payload) => {
    const msg = payload as ChunkMessage;
    if (event !== 'transfer:chunk' || msg.index !== 2) return payload;
    const bytes = Buffer.from(msg.bytes);
    bytes[100] ^= 0xff;
    return { ...msg, bytes };
  });
  const sender = new TransferSender({ chunkSize: 32 * 1024, chunkChecksums: false });
  const transferId = 'corrupt-0001';
  await assert.rejects(
    sender.send(corrupt, bufferChunkSource(data), { kind: 'samples', transferId }),
    (e: unknown) => {
      assert.ok(e instanceof TransferError);
      assert.equal(e.code, 'sha_mismatch');
      assert.equal(e.retryable, false);
      assert.match(e.message, /hash to sha256 [0-9a-f]{64}, not the announced/);
      assert.match(e.message, /nothing was stored/);
      return true;
    },
  );
  assert.deepEqual(await listBlobs(f.blobStore), []);
  assert.deepEqual(await readdir(f.stagingDir), []);
  const status = await rawEmit(client, 'transfer:status', { transferId });
  assert.equal((status as { state?: string }).state, 'unknown');

  // with per-chunk checksums (the default) the receiver refuses the damaged chunk at once and the sender re-reads it
  let damaged = 0;
  const corruptOnce = interceptingEmitter(socketAckEmitter(client), (event, payload) => {
    const msg = payload as ChunkMessage;
    if (event !== 'transfer:chunk' || msg.index !== 2 || damaged++ > 0) return payload;
    const bytes = Buffer.from(msg.bytes);
    bytes[100] ^= 0xff;
    return { ...msg, bytes };
  });
  const before = f.seen.length;
  const ok = await new TransferSender({ chunkSize: 32 * 1024, backoff: { initialMs: 1 } }).send(
    corruptOnce,
    bufferChunkSource(data),
    { kind: 'samples' },
  );
  assert.equal(ok.blob.sha256, sha256Hex(data));
  assert.equal(f.seen.slice(before).filter((c) => c.index === 2).length, 2);
});

test('bad payloads get { ok: false, code: "bad_payload" }, the connection stays up, nothing is stored', async (t) => {
  const f = await federation(t);
  const client = await f.connect();
  const transferId = 'bad-payload-01';
  const cases: Array<[string, string, unknown, RegExp]> = [
    ['missing transferId', 'transfer:chunk', { index: 0, bytes: Buffer.alloc(10) }, /transferId/],
    ['negative index', 'transfer:chunk', { transferId, index: -1, bytes: Buffer.alloc(10) }, /index/],
    ['fractional index', 'transfer:chunk', { transferId, index: 1.5, bytes: Buffer.alloc(10) }, /index/],
    [
      'oversized chunk',
      'transfer:chunk',
      { transferId, index: 0, bytes: Buffer.alloc(1_500_000) },
      /at most 1048576/,
    ],
    ['bytes as a string', 'transfer:chunk', { transferId, index: 0, bytes: 'AAAA' }, /bytes/],
    ['a path as transfer id', 'transfer:status', { transferId: '../../etc/passwd' }, /transferId/],
    ['unknown key', 'transfer:status', { transferId, extra: 1 }, /extra|Unrecognized/i],
    ['two arguments', 'transfer:status', [{ transferId }, 2], /exactly one payload/],
    [
      'chunk size above 1 MiB',
      'transfer:begin',
      { transferId, kind: 'samples', size: 10, sha256: 'a'.repeat(64), chunkSize: 2 * MiB, meta: {} },
      /chunkSize/,
    ],
    [
      'unknown kind',
      'transfer:begin',
      { transferId, kind: 'patients', size: 10, sha256: 'a'.repeat(64), chunkSize: 4096, meta: {} },
      /kind/,
    ],
  ];
  for (const [name, event, payload, pattern] of cases) {
    const reply =
      name === 'two arguments'
        ? await (
            client as unknown as { timeout(ms: number): { emitWithAck(...a: unknown[]): Promise<never> } }
          )
            .timeout(5000)
            .emitWithAck(event, ...(payload as unknown[]))
        : await rawEmit(client, event, payload);
    assert.equal((reply as { ok: boolean }).ok, false, name);
    assert.equal((reply as { code: string }).code, 'bad_payload', name);
    assert.match((reply as { message: string }).message, pattern, name);
    assert.equal(client.connected, true, `${name}: still connected`);
  }
  assert.deepEqual(await listBlobs(f.blobStore), []);
  await assert.rejects(readdir(f.stagingDir), { code: 'ENOENT' }); // no transfer was ever created

  // well-formed but wrong for the transfer: refused by the receiver with its own codes
  assert.equal(
    (await rawEmit(client, 'transfer:chunk', { transferId, index: 0, bytes: Buffer.alloc(10) })).code,
    'unknown_transfer',
  );
  const content = randomBytes(10_000);
  const begun = await rawEmit(client, 'transfer:begin', {
    transferId,
    kind: 'samples',
    size: content.length,
    sha256: sha256Hex(content),
    chunkSize: 4096,
    meta: {},
  });
  assert.equal(begun.ok, true);
  const beyond = await rawEmit(client, 'transfer:chunk', { transferId, index: 3, bytes: Buffer.alloc(10) });
  assert.equal(beyond.code, 'bad_chunk');
  assert.match(beyond.message!, /beyond the last chunk/);
  const short = await rawEmit(client, 'transfer:chunk', { transferId, index: 0, bytes: Buffer.alloc(100) });
  assert.equal(short.code, 'bad_chunk');
  const lastTooLong = await rawEmit(client, 'transfer:chunk', {
    transferId,
    index: 2,
    bytes: Buffer.alloc(4096),
  });
  assert.match(lastTooLong.message!, /must hold 1808 bytes/);
  const wrongSha = await rawEmit(client, 'transfer:chunk', {
    transferId,
    index: 0,
    bytes: content.subarray(0, 4096),
    sha256: 'b'.repeat(64),
  });
  assert.equal(wrongSha.code, 'chunk_checksum');
  const early = await rawEmit(client, 'transfer:commit', { transferId });
  assert.equal(early.code, 'incomplete');
  const conflicting = await rawEmit(client, 'transfer:begin', {
    transferId,
    kind: 'samples',
    size: content.length + 1,
    sha256: sha256Hex(content),
    chunkSize: 4096,
    meta: {},
  });
  assert.equal(conflicting.code, 'transfer_conflict');
  assert.equal(client.connected, true);
  const status = await rawEmit(client, 'transfer:status', { transferId });
  assert.deepEqual(status, {
    ok: true,
    transferId,
    state: 'receiving',
    size: 10_000,
    sha256: sha256Hex(content),
    chunkSize: 4096,
    received: [],
    receivedBytes: 0,
  });

  // abort cleans up, and is idempotent
  assert.deepEqual(await rawEmit(client, 'transfer:abort', { transferId, reason: 'test' }), { ok: true });
  assert.deepEqual(await rawEmit(client, 'transfer:abort', { transferId }), { ok: true });
  assert.deepEqual(await readdir(f.stagingDir), []);
  assert.equal(
    ((await rawEmit(client, 'transfer:status', { transferId })) as { state?: string }).state,
    'unknown',
  );
});
