// The sending end of a transfer. One attempt (`send`) runs over one connection:
//   transfer:begin (a new id) | transfer:status (a resumed id) → (unknown) transfer:begin
//     | (receiving) resume from the held ranges | (committed) done
//   → transfer:chunk for every missing chunk, `window` in flight, each with its ack, a timeout and retries
//   → transfer:commit → the receiver's blob address, checked against our own hash.
// `sendResumable` repeats attempts over fresh connections (same transfer id) until done or a non-retryable error.
import { createHash, randomUUID } from 'node:crypto';
import type * as z from 'zod';
import type { BlobRef } from '../blobstore/blob-store.js';
import { type Clock, systemClock } from '../identity/clock.js';
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from '../protocol/limits.js';
import { transferReplySchemas } from '../protocol/events.js';
import type { TransferKind, TransferStatus } from '../protocol/schemas.js';
import { type AckEmitter, TransportError } from './ack-emitter.js';
import type { ChunkSource } from './chunk-source.js';
import { ChunkSet, chunkCount, chunkLength } from './chunks.js';
import { type ProgressCallback, RateMeter } from './progress.js';
import { TransferError } from './transfer-error.js';

export interface Timers {
  sleep(ms: number): Promise<void>;
}

export const realTimers: Timers = {
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export interface TransferSenderOptions {
  /** bytes per chunk (default 1 MiB - 64 KiB; at most 1 MiB) */
  chunkSize?: number;
  /** chunks in flight at once (default 4) */
  window?: number;
  /** per chunk/status/begin ack (default 30 s) */
  ackTimeoutMs?: number;
  /** for the commit ack, when the receiver hashes everything (default 30 s + 1 s per 20 MB) */
  commitTimeoutMs?: number;
  /** retries of one chunk after a timeout or a retryable refusal (default 5) */
  maxRetries?: number;
  backoff?: Partial<BackoffOptions>;
  /** send each chunk's sha256 so the receiver can refuse a damaged chunk at once (default true) */
  chunkChecksums?: boolean;
  clock?: Clock;
  timers?: Timers;
  newTransferId?: () => string;
  onProgress?: ProgressCallback;
}

export interface SendRequest {
  /** reuse the id to resume; a new one is drawn when absent */
  transferId?: string;
  kind: TransferKind;
  meta?: Record<string, string | number | boolean | null>;
  signal?: AbortSignal;
}

export interface SendResult {
  transferId: string;
  blob: BlobRef;
  /** chunk messages sent by this call, retries included */
  chunksSent: number;
  bytesSent: number;
  /** bytes the receiver already held when the (last) attempt started */
  resumedFromBytes: number;
  attempts: number;
  elapsedMs: number;
}

export class TransferSender {
  readonly chunkSize: number;
  private readonly window: number;
  private readonly ackTimeoutMs: number;
  private readonly commitTimeoutMs?: number;
  private readonly maxRetries: number;
  private readonly backoff: BackoffOptions;
  private readonly chunkChecksums: boolean;
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly newTransferId: () => string;
  private readonly onProgress?: ProgressCallback;

  constructor(options: TransferSenderOptions = {}) {
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_BYTES;
    if (
      !Number.isInteger(this.chunkSize) ||
      this.chunkSize < MIN_CHUNK_BYTES ||
      this.chunkSize > MAX_CHUNK_BYTES
    ) {
      throw new RangeError(`chunkSize must be an integer in ${MIN_CHUNK_BYTES}..${MAX_CHUNK_BYTES}`);
    }
    this.window = Math.max(1, Math.floor(options.window ?? 4));
    this.ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
    this.commitTimeoutMs = options.commitTimeoutMs;
    this.maxRetries = options.maxRetries ?? 5;
    this.backoff = { initialMs: 200, maxMs: 5_000, factor: 2, ...options.backoff };
    this.chunkChecksums = options.chunkChecksums ?? true;
    this.clock = options.clock ?? systemClock;
    this.timers = options.timers ?? realTimers;
    this.newTransferId = options.newTransferId ?? (() => randomUUID());
    this.onProgress = options.onProgress;
  }

  /** Delay before retry number `attempt` (1-based): exponential and capped (deterministic, no jitter). */
  backoffMs(attempt: number): number {
    return Math.min(
      this.backoff.maxMs,
      this.backoff.initialMs * this.backoff.factor ** Math.max(0, attempt - 1),
    );
  }

  /**
   * Sends over fresh connections until the transfer commits: `connect` resolves with a connected emitter (waiting
   * for the socket to come back if need be). Stops on a non-retryable error or after `maxAttempts`.
   */
  async sendResumable(
    connect: () => Promise<AckEmitter>,
    source: ChunkSource,
    request: SendRequest,
    options: { maxAttempts?: number } = {},
  ): Promise<SendResult> {
    const transferId = request.transferId ?? this.newTransferId();
    const maxAttempts = options.maxAttempts ?? 10;
    const counters = { chunksSent: 0, bytesSent: 0 };
    const started = this.clock.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const emitter = await connect();
        const fresh = attempt === 1 && request.transferId === undefined;
        const result = await this.attempt(emitter, source, { ...request, transferId, fresh }, counters);
        return { ...result, attempts: attempt, elapsedMs: this.clock.now() - started };
      } catch (err) {
        const retryable = err instanceof TransferError ? err.retryable : err instanceof TransportError;
        if (!retryable || attempt >= maxAttempts || request.signal?.aborted) throw err;
        await this.timers.sleep(this.backoffMs(attempt));
      }
    }
  }

  /** One attempt over one connection. Rejects with TransferError (retryable ones can be resumed). */
  async send(emitter: AckEmitter, source: ChunkSource, request: SendRequest): Promise<SendResult> {
    const transferId = request.transferId ?? this.newTransferId();
    const fresh = request.transferId === undefined;
    return this.attempt(emitter, source, { ...request, transferId, fresh }, { chunksSent: 0, bytesSent: 0 });
  }

  /** Tells the receiver to drop the transfer (best effort). */
  async abort(emitter: AckEmitter, transferId: string, reason?: string): Promise<void> {
    await this.call(
      emitter,
      'transfer:abort',
      { transferId, ...(reason ? { reason } : {}) },
      this.ackTimeoutMs,
    );
  }

  private async attempt(
    emitter: AckEmitter,
    source: ChunkSource,
    request: SendRequest & { transferId: string; fresh: boolean },
    counters: { chunksSent: number; bytesSent: number },
  ): Promise<SendResult> {
    const { transferId, signal } = request;
    const started = this.clock.now();
    const checkAborted = () => {
      if (signal?.aborted) throw new TransferError('aborted', `transfer ${transferId} was aborted`, false);
    };
    checkAborted();
    await source.checkUnchanged();
    const size = source.size;
    const sha256 = await source.sha256();
    let chunkSize = this.chunkSize;

    // A transfer id we just drew cannot exist at the receiver: announce it at once. Otherwise (a resume, on this or
    // a new connection) ask what the receiver holds first.
    let status = request.fresh
      ? ({ state: 'unknown' } as const)
      : await this.call(emitter, 'transfer:status', { transferId }, this.ackTimeoutMs);
    if (status.state === 'unknown') {
      status = await this.call(
        emitter,
        'transfer:begin',
        { transferId, kind: request.kind, size, sha256, chunkSize, meta: request.meta ?? {} },
        this.ackTimeoutMs,
      );
    }
    // A resumed transfer keeps the chunk size it began with (the receiver's chunk index is keyed by it), even when
    // this sender was configured with another one (e.g. an agent restarted with other options).
    const theirs = status.chunkSize;
    if (
      status.size === size &&
      status.sha256 === sha256 &&
      theirs !== undefined &&
      Number.isInteger(theirs) &&
      theirs >= MIN_CHUNK_BYTES &&
      theirs <= MAX_CHUNK_BYTES
    ) {
      chunkSize = theirs;
    }
    const total = chunkCount(size, chunkSize);
    if (status.size !== size || status.sha256 !== sha256 || status.chunkSize !== chunkSize) {
      throw new TransferError(
        'conflict',
        `receiver holds transfer ${transferId} with size ${status.size}, sha256 ${status.sha256}, chunk size ` +
          `${status.chunkSize}; ours is ${size}, ${sha256}, ${chunkSize}`,
        false,
      );
    }

    for (let round = 0; ; round++) {
      if (status.state === 'committed' && status.blob) {
        return this.finish(transferId, status.blob, sha256, size, counters, status.receivedBytes, started);
      }
      const held = ChunkSet.fromRanges(total, status.received);
      const resumedFromBytes = held.bytes(size, chunkSize);
      const meter = new RateMeter(this.clock, resumedFromBytes);
      await this.sendMissing(
        emitter,
        source,
        transferId,
        held,
        size,
        chunkSize,
        meter,
        counters,
        checkAborted,
      );
      checkAborted();
      await source.checkUnchanged();
      const commitTimeout = this.commitTimeoutMs ?? 30_000 + Math.ceil(size / 20e6) * 1000;
      let blob: BlobRef;
      try {
        ({ blob } = await this.call(emitter, 'transfer:commit', { transferId }, commitTimeout));
      } catch (err) {
        // the receiver lost chunks (e.g. it restarted before recording them): ask again and fill the holes, twice
        if (err instanceof TransferError && err.peerCode === 'incomplete' && round < 2) {
          status = await this.call(emitter, 'transfer:status', { transferId }, this.ackTimeoutMs);
          continue;
        }
        throw err;
      }
      return this.finish(transferId, blob, sha256, size, counters, resumedFromBytes, started);
    }
  }

  private finish(
    transferId: string,
    blob: BlobRef,
    sha256: string,
    size: number,
    counters: { chunksSent: number; bytesSent: number },
    resumedFromBytes: number,
    started: number,
  ): SendResult {
    if (blob.sha256 !== sha256 || blob.size !== size) {
      throw new TransferError(
        'sha_mismatch',
        `receiver committed ${blob.sha256} (${blob.size} bytes), we sent ${sha256} (${size} bytes)`,
        false,
      );
    }
    return {
      transferId,
      blob,
      ...counters,
      resumedFromBytes,
      attempts: 1,
      elapsedMs: this.clock.now() - started,
    };
  }

  private async sendMissing(
    emitter: AckEmitter,
    source: ChunkSource,
    transferId: string,
    held: ChunkSet,
    size: number,
    chunkSize: number,
    meter: RateMeter,
    counters: { chunksSent: number; bytesSent: number },
    checkAborted: () => void,
  ): Promise<void> {
    const queue = held.missing();
    // Chunk buffers are reused once their ack is in (the peer has every byte by then; socket.io's websocket client
    // masks into its own copy anyway). A buffer whose send failed or timed out is dropped, never reused: it may still
    // sit in a transport queue.
    const pool: Buffer[] = [];
    let failure: unknown;
    let bytesDone = held.bytes(size, chunkSize);
    const report = () =>
      this.onProgress?.(
        meter.snapshot({
          transferId,
          direction: 'send',
          bytesDone,
          bytesTotal: size,
          chunksDone: held.count,
          chunksTotal: held.total,
        }),
      );

    const worker = async () => {
      for (let next = queue.next(); !next.done && failure === undefined; next = queue.next()) {
        const index = next.value;
        const offset = index * chunkSize;
        const length = chunkLength(size, chunkSize, index);
        for (let retry = 0; ; retry++) {
          checkAborted();
          if (failure !== undefined) return;
          const buffer = pool.pop() ?? Buffer.allocUnsafe(chunkSize);
          const bytes = await source.read(offset, length, buffer);
          const msg = {
            transferId,
            index,
            bytes,
            ...(this.chunkChecksums ? { sha256: createHash('sha256').update(bytes).digest('hex') } : {}),
          };
          counters.chunksSent++;
          counters.bytesSent += length;
          try {
            await this.call(emitter, 'transfer:chunk', msg, this.ackTimeoutMs);
            pool.push(buffer);
            break;
          } catch (err) {
            const again =
              (err instanceof TransferError && err.code === 'timeout') ||
              (err instanceof TransferError && err.code === 'rejected' && err.retryable);
            if (!again || retry >= this.maxRetries) throw err;
            await this.timers.sleep(this.backoffMs(retry + 1));
          }
        }
        if (held.add(index)) bytesDone += length;
        report();
      }
    };

    const workers = Array.from({ length: Math.min(this.window, Math.max(1, held.total - held.count)) }, () =>
      worker().catch((err: unknown) => {
        failure ??= err;
      }),
    );
    await Promise.all(workers);
    if (failure !== undefined) throw failure;
  }

  /** One request/ack round trip, the ack parsed with its schema; error replies become TransferErrors. */
  private async call<E extends keyof typeof transferReplySchemas>(
    emitter: AckEmitter,
    event: E,
    payload: unknown,
    timeoutMs: number,
  ): Promise<Extract<z.output<(typeof transferReplySchemas)[E]>, { ok: true }>> {
    let raw: unknown;
    try {
      raw = await emitter.emitWithAck(event, payload, timeoutMs);
    } catch (err) {
      if (err instanceof TransportError) {
        throw new TransferError(err.kind, err.message, true);
      }
      throw new TransferError('disconnected', `${event}: ${(err as Error).message}`, true);
    }
    const parsed = transferReplySchemas[event].safeParse(raw);
    if (!parsed.success) {
      throw new TransferError('bad_reply', `${event}: the receiver's ack does not match the protocol`, false);
    }
    const reply = parsed.data;
    if (reply.ok) return reply as Extract<z.output<(typeof transferReplySchemas)[E]>, { ok: true }>;
    if (reply.code === 'sha_mismatch')
      throw new TransferError('sha_mismatch', reply.message, false, reply.code);
    const retryable = reply.retryable === true || reply.code === 'incomplete' || reply.code === 'busy';
    throw new TransferError(
      'rejected',
      `${event} refused: ${reply.code}: ${reply.message}`,
      retryable,
      reply.code,
    );
  }
}

export type { TransferStatus };
