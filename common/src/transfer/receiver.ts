// The receiving end of a transfer. Stateless about connections: every request names its transfer, and chunks are
// idempotent by (transfer id, index), so a sender may retry anything, over any connection, after any restart of
// either side. Transfers belong to an owner (the site id on the coordinator; the coordinator on a site): another
// owner's transfer id is 'unknown_transfer' to everyone else.
import { createHash } from 'node:crypto';
import { BlobIntegrityError, type BlobRef, type BlobStore } from '../blobstore/blob-store.js';
import { type Clock, systemClock } from '../identity/clock.js';
import { ProtocolError, type OkReply } from '../protocol/errors.js';
import type {
  ChunkAck,
  CommitAck,
  TransferAbort,
  TransferBegin,
  TransferChunk,
  TransferKind,
  TransferRef,
  TransferStatus,
} from '../protocol/schemas.js';
import { transferPayloadSchemas } from '../protocol/events.js';
import { type ListeningSocket, onValidated } from '../protocol/validated.js';
import { ChunkSet, chunkCount, chunkLength } from './chunks.js';
import { type ProgressCallback, RateMeter } from './progress.js';
import {
  type ChunkStaging,
  FileChunkStaging,
  StagedTransferGoneError,
  type TransferRecord,
} from './staging.js';

export interface CommittedTransfer {
  owner: string;
  transferId: string;
  kind: TransferKind;
  meta: TransferRecord['meta'];
  blob: BlobRef;
}

export interface TransferReceiverOptions {
  /** where transfers in progress live; a directory (FileChunkStaging) or any ChunkStaging */
  staging: ChunkStaging | string;
  blobStore: BlobStore;
  clock?: Clock;
  /** largest transfer accepted (default 16 GiB) */
  maxTransferBytes?: number;
  /** transfers in progress per owner (default 16) */
  maxActivePerOwner?: number;
  /** kinds this end accepts (default: all) */
  acceptKinds?: readonly TransferKind[];
  onProgress?: ProgressCallback;
  /**
   * Runs once a transfer is committed, before the commit is acknowledged (record provenance here). If it throws,
   * the commit is answered 'internal' (retryable) and the hook runs again on the sender's next commit: at least once.
   */
  onCommitted?: (transfer: CommittedTransfer) => void | Promise<void>;
}

interface Active {
  record: TransferRecord;
  chunks: ChunkSet;
  inflight: Map<number, Promise<void>>;
  meter: RateMeter;
  gone: boolean;
}

export class TransferReceiver {
  private readonly staging: ChunkStaging;
  private readonly blobStore: BlobStore;
  private readonly clock: Clock;
  private readonly maxTransferBytes: number;
  private readonly maxActivePerOwner: number;
  private readonly acceptKinds?: ReadonlySet<TransferKind>;
  private readonly onProgress?: ProgressCallback;
  private readonly onCommitted?: TransferReceiverOptions['onCommitted'];
  private readonly active = new Map<string, Active>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(options: TransferReceiverOptions) {
    this.staging =
      typeof options.staging === 'string' ? new FileChunkStaging(options.staging) : options.staging;
    this.blobStore = options.blobStore;
    this.clock = options.clock ?? systemClock;
    this.maxTransferBytes = options.maxTransferBytes ?? 16 * 2 ** 30;
    this.maxActivePerOwner = options.maxActivePerOwner ?? 16;
    this.acceptKinds = options.acceptKinds ? new Set(options.acceptKinds) : undefined;
    this.onProgress = options.onProgress;
    this.onCommitted = options.onCommitted;
  }

  async begin(owner: string, msg: TransferBegin): Promise<OkReply<TransferStatus>> {
    return this.withLock(msg.transferId, async () => {
      const existing = await this.find(owner, msg.transferId, { otherOwner: 'conflict', locked: true });
      if (existing) {
        const r = existing.record;
        if (
          r.kind !== msg.kind ||
          r.size !== msg.size ||
          r.sha256 !== msg.sha256 ||
          r.chunkSize !== msg.chunkSize
        ) {
          throw new ProtocolError(
            'transfer_conflict',
            `transfer ${msg.transferId} exists with kind ${r.kind}, size ${r.size}, sha256 ${r.sha256}, chunk size ` +
              `${r.chunkSize}`,
          );
        }
        return this.statusOf(existing);
      }
      if (this.acceptKinds && !this.acceptKinds.has(msg.kind)) {
        throw new ProtocolError('declined', `this end does not accept ${msg.kind} transfers`);
      }
      if (msg.size > this.maxTransferBytes) {
        throw new ProtocolError(
          'too_large',
          `${msg.size} bytes is more than the ${this.maxTransferBytes} accepted`,
        );
      }
      const mine = [...this.active.values()].filter(
        (a) => a.record.owner === owner && a.record.state === 'receiving',
      );
      if (mine.length >= this.maxActivePerOwner) {
        throw new ProtocolError('too_many_transfers', `${mine.length} transfers already in progress`, true);
      }
      const record: TransferRecord = {
        version: 1,
        transferId: msg.transferId,
        owner,
        kind: msg.kind,
        size: msg.size,
        sha256: msg.sha256,
        chunkSize: msg.chunkSize,
        meta: msg.meta,
        createdAt: this.clock.now(),
        state: 'receiving',
      };
      await this.staging.create(record);
      const a = this.track(record, []);
      return this.statusOf(a);
    });
  }

  async status(owner: string, msg: TransferRef): Promise<OkReply<TransferStatus>> {
    const a = await this.find(owner, msg.transferId, { otherOwner: 'hide', locked: false });
    if (!a) return { ok: true, transferId: msg.transferId, state: 'unknown', received: [], receivedBytes: 0 };
    return this.statusOf(a);
  }

  async chunk(owner: string, msg: TransferChunk): Promise<OkReply<ChunkAck>> {
    const a = await this.find(owner, msg.transferId, { otherOwner: 'hide', locked: false });
    if (!a) throw new ProtocolError('unknown_transfer', `no transfer ${msg.transferId}`);
    const { record, chunks } = a;
    const total = chunks.total;
    if (msg.index >= total) {
      throw new ProtocolError('bad_chunk', `chunk ${msg.index} is beyond the last chunk (${total - 1})`);
    }
    const expected = chunkLength(record.size, record.chunkSize, msg.index);
    if (msg.bytes.byteLength !== expected) {
      throw new ProtocolError(
        'bad_chunk',
        `chunk ${msg.index} must hold ${expected} bytes, not ${msg.bytes.byteLength}`,
      );
    }
    if (record.state === 'committed') return { ok: true, index: msg.index, duplicate: true };
    if (msg.sha256 !== undefined && createHash('sha256').update(msg.bytes).digest('hex') !== msg.sha256) {
      throw new ProtocolError(
        'chunk_checksum',
        `chunk ${msg.index} does not match its sha256; send it again`,
        true,
      );
    }
    if (chunks.has(msg.index)) return { ok: true, index: msg.index, duplicate: true };
    const pending = a.inflight.get(msg.index);
    if (pending) {
      await pending.catch(() => undefined);
      if (chunks.has(msg.index)) return { ok: true, index: msg.index, duplicate: true };
    }
    const write = this.staging.writeChunk(
      record.transferId,
      msg.index,
      msg.index * record.chunkSize,
      msg.bytes,
    );
    a.inflight.set(msg.index, write);
    try {
      await write;
    } catch (err) {
      if (err instanceof StagedTransferGoneError || a.gone) {
        throw new ProtocolError('unknown_transfer', `transfer ${msg.transferId} was aborted`);
      }
      throw err;
    } finally {
      a.inflight.delete(msg.index);
    }
    chunks.add(msg.index);
    this.onProgress?.(
      a.meter.snapshot({
        transferId: record.transferId,
        direction: 'receive',
        bytesDone: chunks.bytes(record.size, record.chunkSize),
        bytesTotal: record.size,
        chunksDone: chunks.count,
        chunksTotal: total,
      }),
    );
    return { ok: true, index: msg.index, duplicate: false };
  }

  async commit(owner: string, msg: TransferRef): Promise<OkReply<CommitAck>> {
    return this.withLock(msg.transferId, async () => {
      const a = await this.find(owner, msg.transferId, { otherOwner: 'hide', locked: true });
      if (!a) throw new ProtocolError('unknown_transfer', `no transfer ${msg.transferId}`);
      const { record, chunks } = a;
      if (record.state === 'receiving') {
        await Promise.allSettled([...a.inflight.values()]);
        if (!chunks.complete) {
          throw new ProtocolError(
            'incomplete',
            `${chunks.total - chunks.count} of ${chunks.total} chunks are missing; ask transfer:status and send them`,
            true,
          );
        }
        let blob: BlobRef;
        try {
          blob = await this.staging.publish(record.transferId, this.blobStore, {
            sha256: record.sha256,
            size: record.size,
          });
        } catch (err) {
          if (!(err instanceof BlobIntegrityError)) throw err;
          await this.drop(a);
          throw new ProtocolError(
            'sha_mismatch',
            `transfer ${record.transferId}: the ${err.actual.size} bytes received hash to sha256 ${err.actual.sha256}, ` +
              `not the announced ${record.sha256}; nothing was stored and the transfer was discarded, send it again`,
          );
        }
        Object.assign(record, {
          state: 'committed',
          blob,
          committedAt: this.clock.now(),
        } satisfies Partial<TransferRecord>);
        await this.staging.saveRecord(record);
        await this.staging.discardData(record.transferId);
      }
      const blob = record.blob!;
      if (!record.delivered) {
        if (this.onCommitted) {
          await this.onCommitted({
            owner,
            transferId: record.transferId,
            kind: record.kind,
            meta: record.meta,
            blob,
          });
        }
        record.delivered = true;
        await this.staging.saveRecord(record);
      }
      this.active.delete(record.transferId); // the tombstone on disk answers later requests
      return { ok: true, transferId: record.transferId, blob };
    });
  }

  async abort(owner: string, msg: TransferAbort): Promise<OkReply> {
    return this.withLock(msg.transferId, async () => {
      const a = await this.find(owner, msg.transferId, { otherOwner: 'hide', locked: true });
      if (a && a.record.state === 'receiving') await this.drop(a);
      return { ok: true }; // idempotent; a committed transfer stays committed
    });
  }

  /** Removes abandoned transfers (no chunk for `incompleteMs`) and old commit tombstones (`committedMs`). */
  async sweep(options: { incompleteMs: number; committedMs: number }): Promise<string[]> {
    const now = this.clock.now();
    const removed: string[] = [];
    for (const { transferId, lastActivityMs } of await this.staging.list()) {
      await this.withLock(transferId, async () => {
        const staged = await this.staging.load(transferId);
        if (!staged) return;
        const limit = staged.record.state === 'committed' ? options.committedMs : options.incompleteMs;
        if (now - lastActivityMs < limit) return;
        const a = this.active.get(transferId);
        if (a) a.gone = true;
        this.active.delete(transferId);
        await this.staging.remove(transferId);
        removed.push(transferId);
      });
    }
    return removed;
  }

  private statusOf(a: Active): OkReply<TransferStatus> {
    const r = a.record;
    const committed = r.state === 'committed';
    const chunks = committed ? ChunkSet.fromRanges(a.chunks.total, [[0, a.chunks.total]]) : a.chunks;
    return {
      ok: true,
      transferId: r.transferId,
      state: r.state,
      size: r.size,
      sha256: r.sha256,
      chunkSize: r.chunkSize,
      received: chunks.toRanges(),
      receivedBytes: chunks.bytes(r.size, r.chunkSize),
      ...(committed && r.blob ? { blob: r.blob } : {}),
    };
  }

  /** The transfer, from memory or from staging (after a restart); undefined when unknown (or another owner's). */
  private async find(
    owner: string,
    transferId: string,
    opts: { otherOwner: 'hide' | 'conflict'; locked: boolean },
  ): Promise<Active | undefined> {
    let a = this.active.get(transferId);
    if (!a) {
      // from disk under the transfer's lock (unless the caller holds it), so a concurrent abort cannot be undone
      const load = async () => {
        const staged = await this.staging.load(transferId);
        return staged && (this.active.get(transferId) ?? this.track(staged.record, staged.received));
      };
      a = opts.locked ? await load() : await this.withLock(transferId, load);
      if (!a) return undefined;
    }
    if (a.record.owner !== owner) {
      if (opts.otherOwner === 'conflict') {
        throw new ProtocolError('transfer_conflict', `transfer id ${transferId} is in use; pick another`);
      }
      return undefined;
    }
    return a;
  }

  private track(record: TransferRecord, received: number[]): Active {
    const chunks = new ChunkSet(chunkCount(record.size, record.chunkSize));
    for (const i of received) chunks.add(i);
    const a: Active = {
      record,
      chunks,
      inflight: new Map(),
      meter: new RateMeter(this.clock, chunks.bytes(record.size, record.chunkSize)),
      gone: false,
    };
    if (record.state === 'receiving') this.active.set(record.transferId, a);
    return a;
  }

  private async drop(a: Active): Promise<void> {
    a.gone = true;
    this.active.delete(a.record.transferId);
    await Promise.allSettled([...a.inflight.values()]);
    await this.staging.remove(a.record.transferId);
  }

  /** Serializes begin/commit/abort/sweep of one transfer id. */
  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }
}

export interface AttachReceiverOptions {
  /** whose transfers these are: the authenticated site id on the coordinator, e.g. 'coordinator' on a site */
  owner: string;
  onError?: (err: unknown, event: string) => void;
}

/** Answers the five transfer events on a socket (either side) with a receiver, each payload validated first. */
export function attachTransferReceiver(
  socket: ListeningSocket,
  receiver: TransferReceiver,
  options: AttachReceiverOptions,
): void {
  const { owner, onError } = options;
  const s = transferPayloadSchemas;
  onValidated(socket, 'transfer:begin', s['transfer:begin'], (m) => receiver.begin(owner, m), { onError });
  onValidated(socket, 'transfer:chunk', s['transfer:chunk'], (m) => receiver.chunk(owner, m), { onError });
  onValidated(socket, 'transfer:status', s['transfer:status'], (m) => receiver.status(owner, m), { onError });
  onValidated(socket, 'transfer:commit', s['transfer:commit'], (m) => receiver.commit(owner, m), { onError });
  onValidated(socket, 'transfer:abort', s['transfer:abort'], (m) => receiver.abort(owner, m), { onError });
}
