// Test scaffolding shared by the transfer specs: a real socket.io server and client on 127.0.0.1, temp dirs,
// random files written without holding them in memory, and emitter wrappers that count, drop or damage messages.
// (Tests only: `socket.io` is the coordinator's dependency, hoisted to the root node_modules.)
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Server, type Socket as ServerSocket } from 'socket.io';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import type { ServerToSiteEvents, SiteToServerEvents } from '../protocol/events.js';
import { RECOMMENDED_MAX_HTTP_BUFFER_SIZE } from '../protocol/limits.js';
import type { AckEmitter } from './ack-emitter.js';

export type CoordinatorServer = Server<SiteToServerEvents, ServerToSiteEvents>;
export type CoordinatorSideSocket = ServerSocket<SiteToServerEvents, ServerToSiteEvents>;
export type SiteSocket = ClientSocket<ServerToSiteEvents, SiteToServerEvents>;

export interface TestServer {
  io: CoordinatorServer;
  url: string;
  close(): Promise<void>;
}

export async function startServer(
  onConnection: (socket: CoordinatorSideSocket) => void,
  maxHttpBufferSize = RECOMMENDED_MAX_HTTP_BUFFER_SIZE,
): Promise<TestServer> {
  const http = createServer();
  const server: CoordinatorServer = new Server(http, { maxHttpBufferSize });
  server.on('connection', onConnection);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    io: server,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}

export async function connectSite(url: string): Promise<SiteSocket> {
  const socket: SiteSocket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  return socket;
}

export async function tempDir(
  t: { after(fn: () => Promise<void>): void },
  prefix = 'fedsynth-transfer-',
): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `size` random bytes a MiB at a time and returns their sha256. */
export async function writeRandomFile(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const h = await open(file, 'w');
  try {
    for (let done = 0; done < size;) {
      const block = randomBytes(Math.min(1024 * 1024, size - done));
      hash.update(block);
      await h.write(block, 0, block.length, done);
      done += block.length;
    }
  } finally {
    await h.close();
  }
  return hash.digest('hex');
}

export interface ChunkMessage {
  transferId: string;
  index: number;
  bytes: Buffer;
  sha256?: string;
}

/** Wraps an emitter; `intercept` may rewrite a payload (or return it) before it is sent. */
export function interceptingEmitter(
  inner: AckEmitter,
  intercept: (event: string, payload: unknown) => unknown,
): AckEmitter {
  return {
    emitWithAck: (event, payload, timeoutMs) =>
      inner.emitWithAck(event, intercept(event, payload), timeoutMs),
  };
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
