// Measures one site → coordinator transfer of a random file over socket.io on loopback, both ends in this process:
// throughput and resident memory (RSS) before and at peak. Used by the memory spec (64 MiB) and the bench (1 GiB).
// (Tests and benchmarks only: it starts a socket.io server, the coordinator's dependency.)
import path from 'node:path';
import { rm } from 'node:fs/promises';
import { FileBlobStore } from '../blobstore/file-blob-store.js';
import { socketAckEmitter } from './ack-emitter.js';
import { fileChunkSource } from './chunk-source.js';
import { TransferReceiver, attachTransferReceiver } from './receiver.js';
import { TransferSender } from './sender.js';
import { connectSite, startServer, writeRandomFile } from './transfer-spec-helpers.js';

export interface TransferMeasurement {
  sizeBytes: number;
  chunkSize: number;
  window: number;
  gcEachChunk: boolean;
  /** wall time of the transfer proper (hash + chunks + commit) */
  elapsedMs: number;
  mbPerSecond: number;
  rssBeforeMb: number;
  rssPeakMb: number;
  rssGrowthMb: number;
  heapPeakMb: number;
  arrayBuffersPeakMb: number;
}

const MB = 1024 * 1024;

export async function measureTransfer(options: {
  dir: string;
  sizeBytes: number;
  chunkSize?: number;
  window?: number;
  /** with `node --expose-gc`: collect garbage before the baseline and after every chunk, so RSS shows what is
   * retained rather than when V8 chooses to collect dead Buffers (it lets ~64 MB of them pile up) */
  gcEachChunk?: boolean;
}): Promise<TransferMeasurement> {
  const { dir, sizeBytes } = options;
  const file = path.join(dir, 'payload.bin');
  const sha = await writeRandomFile(file, sizeBytes);
  const blobStore = new FileBlobStore(path.join(dir, 'blobs'));
  const receiver = new TransferReceiver({ staging: path.join(dir, 'staging'), blobStore });
  const server = await startServer((socket) => attachTransferReceiver(socket, receiver, { owner: 'site' }));
  const client = await connectSite(server.url);
  try {
    // warm up: modules, socket.io buffers, the JIT, so the baseline is the steady state
    const warm = path.join(dir, 'warm.bin');
    await writeRandomFile(warm, 4 * MB);
    const warmSource = await fileChunkSource(warm);
    await new TransferSender({ chunkSize: options.chunkSize, window: options.window }).send(
      socketAckEmitter(client),
      warmSource,
      { kind: 'samples' },
    );
    await warmSource.close();
    await rm(warm);
    const gc = (globalThis as { gc?: () => void }).gc;
    if (options.gcEachChunk && !gc) throw new Error('gcEachChunk needs node --expose-gc');
    gc?.();

    const before = process.memoryUsage();
    let rssPeak = before.rss;
    let heapPeak = before.heapUsed;
    let abPeak = before.arrayBuffers;
    const sample = () => {
      if (options.gcEachChunk) gc!();
      const m = process.memoryUsage();
      rssPeak = Math.max(rssPeak, m.rss);
      heapPeak = Math.max(heapPeak, m.heapUsed);
      abPeak = Math.max(abPeak, m.arrayBuffers);
    };
    const timer = options.gcEachChunk ? undefined : setInterval(sample, 20);
    const sender = new TransferSender({
      chunkSize: options.chunkSize,
      window: options.window,
      onProgress: sample,
    });
    const source = await fileChunkSource(file);
    const started = performance.now();
    const result = await sender.send(socketAckEmitter(client), source, { kind: 'samples' });
    const elapsedMs = performance.now() - started;
    if (timer) clearInterval(timer);
    sample();
    await source.close();
    if (result.blob.sha256 !== sha) throw new Error(`stored ${result.blob.sha256}, sent ${sha}`);
    return {
      sizeBytes,
      chunkSize: sender.chunkSize,
      window: options.window ?? 4,
      gcEachChunk: options.gcEachChunk ?? false,
      elapsedMs,
      mbPerSecond: sizeBytes / MB / (elapsedMs / 1000),
      rssBeforeMb: before.rss / MB,
      rssPeakMb: rssPeak / MB,
      rssGrowthMb: (rssPeak - before.rss) / MB,
      heapPeakMb: heapPeak / MB,
      arrayBuffersPeakMb: abPeak / MB,
    };
  } finally {
    client.close();
    await server.close();
  }
}
