// The sender's own behaviour over a real socket: lost acks and retries with backoff, the window, aborts, a source
// that changes under it, and an emitter that fails for good.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FileBlobStore } from '../blobstore/file-blob-store.js';
import { type AckEmitter, TransportError, socketAckEmitter } from './ack-emitter.js';
import { bufferChunkSource, fileChunkSource } from './chunk-source.js';
import { TransferReceiver, attachTransferReceiver } from './receiver.js';
import { TransferSender } from './sender.js';
import { TransferError } from './transfer-error.js';
import { type ChunkMessage, connectSite, sha256Hex, startServer, tempDir } from './transfer-spec-helpers.js';

async function setup(t: { after(fn: () => Promise<void> | void): void }) {
  const dir = await tempDir(t);
  const blobStore = new FileBlobStore(path.join(dir, 'blobs'));
  const receiver = new TransferReceiver({ staging: path.join(dir, 'staging'), blobStore });
  const server = await startServer((socket) => attachTransferReceiver(socket, receiver, { owner: 'site' }));
  t.after(() => server.close());
  const client = await connectSite(server.url);
  t.after(() => {
    client.close();
  });
  return { dir, blobStore, receiver, client, emitter: socketAckEmitter(client) };
}

test('a lost ack is retried after a backoff, and the retry is acked as the duplicate it is', async (t) => {
  const { emitter } = await setup(t);
  const sleeps: number[] = [];
  let lost = 0;
  const lossy: AckEmitter = {
    async emitWithAck(event, payload, timeoutMs) {
      const reply = await emitter.emitWithAck(event, payload, timeoutMs);
      // the chunk arrives but its ack is lost, twice
      if (event === 'transfer:chunk' && (payload as ChunkMessage).index === 1 && lost < 2) {
        lost++;
        throw new TransportError('timeout', 'no ack');
      }
      return reply;
    },
  };
  const sender = new TransferSender({
    chunkSize: 4096,
    backoff: { initialMs: 100, factor: 3, maxMs: 250 },
    timers: { sleep: async (ms) => void sleeps.push(ms) },
  });
  const data = randomBytes(5 * 4096);
  const result = await sender.send(lossy, bufferChunkSource(data), { kind: 'samples' });
  assert.equal(result.blob.sha256, sha256Hex(data));
  assert.deepEqual(sleeps, [100, 250]);
  assert.equal(result.chunksSent, 7);
});

test('after maxRetries timeouts the attempt fails as retryable', async (t) => {
  const { emitter } = await setup(t);
  const dead: AckEmitter = {
    emitWithAck: (event, payload, timeoutMs) =>
      event === 'transfer:chunk'
        ? Promise.reject(new TransportError('timeout', 'no ack'))
        : emitter.emitWithAck(event, payload, timeoutMs),
  };
  const sender = new TransferSender({ chunkSize: 4096, maxRetries: 2, timers: { sleep: async () => {} } });
  await assert.rejects(
    sender.send(dead, bufferChunkSource(randomBytes(9000)), { kind: 'samples' }),
    (e: unknown) => {
      return e instanceof TransferError && e.code === 'timeout' && e.retryable;
    },
  );
});

test('real socket.io timeouts: a receiver that never acks', async (t) => {
  const server = await startServer((socket) => {
    socket.on('transfer:status', () => undefined); // swallow, never ack
  });
  t.after(() => server.close());
  const client = await connectSite(server.url);
  t.after(() => {
    client.close();
  });
  const sender = new TransferSender({ ackTimeoutMs: 150 });
  const started = Date.now();
  await assert.rejects(
    sender.send(socketAckEmitter(client), bufferChunkSource(Buffer.alloc(10)), { kind: 'samples' }),
    {
      code: 'timeout',
    },
  );
  assert.ok(Date.now() - started >= 140);
});

test('no more than `window` chunks are in flight, and more than one is', async (t) => {
  const { emitter } = await setup(t);
  let inFlight = 0;
  let most = 0;
  const counting: AckEmitter = {
    async emitWithAck(event, payload, timeoutMs) {
      if (event !== 'transfer:chunk') return emitter.emitWithAck(event, payload, timeoutMs);
      most = Math.max(most, ++inFlight);
      try {
        return await emitter.emitWithAck(event, payload, timeoutMs);
      } finally {
        inFlight--;
      }
    },
  };
  await new TransferSender({ chunkSize: 16 * 1024, window: 3 }).send(
    counting,
    bufferChunkSource(randomBytes(400_000)),
    {
      kind: 'samples',
    },
  );
  assert.equal(most, 3);
});

test('an AbortSignal stops the transfer; abort() makes the receiver drop it', async (t) => {
  const { emitter, receiver } = await setup(t);
  const controller = new AbortController();
  const sender = new TransferSender({
    chunkSize: 4096,
    window: 1,
    onProgress: (p) => {
      if (p.chunksDone === 3) controller.abort();
    },
  });
  const transferId = 'aborted-00001';
  await assert.rejects(
    sender.send(emitter, bufferChunkSource(randomBytes(20 * 4096)), {
      kind: 'samples',
      transferId,
      signal: controller.signal,
    }),
    (e: unknown) => e instanceof TransferError && e.code === 'aborted' && !e.retryable,
  );
  assert.equal((await receiver.status('site', { transferId })).state, 'receiving');
  await sender.abort(emitter, transferId, 'user cancelled');
  assert.equal((await receiver.status('site', { transferId })).state, 'unknown');
});

test('a file that changes between attempts is refused (source_changed), not sent mixed', async (t) => {
  const { emitter, dir } = await setup(t);
  const file = path.join(dir, 'f.bin');
  await writeFile(file, randomBytes(50_000));
  const source = await fileChunkSource(file);
  t.after(() => source.close());
  await source.sha256();
  await appendFile(file, 'more');
  await assert.rejects(new TransferSender().send(emitter, source, { kind: 'samples' }), (e: unknown) => {
    return e instanceof TransferError && e.code === 'source_changed' && !e.retryable;
  });
});

test('sendResumable gives up after maxAttempts on a connection that keeps failing', async (t) => {
  await setup(t);
  let connects = 0;
  const sender = new TransferSender({ timers: { sleep: async () => {} } });
  const broken: AckEmitter = {
    emitWithAck: () => Promise.reject(new TransportError('disconnected', 'gone')),
  };
  await assert.rejects(
    sender.sendResumable(
      async () => (connects++, broken),
      bufferChunkSource(Buffer.alloc(5)),
      { kind: 'samples' },
      {
        maxAttempts: 3,
      },
    ),
    { code: 'disconnected' },
  );
  assert.equal(connects, 3);
});
