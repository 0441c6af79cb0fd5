// Where a receiver keeps transfers in progress, so that a restarted process resumes them. FileChunkStaging keeps
// three files per transfer in its directory:
//   <id>.json  the record (what was announced, who owns it, committed or not), written atomically; it is written
//              last at creation, so its presence means the transfer exists
//   <id>.part  the data, preallocated (sparse) to the announced size, chunks written at their offsets
//   <id>.idx   a journal of received chunk indices (uint32 LE, appended after the chunk's data was written)
// A chunk counts as received once its index is in the journal. Data is not fsynced per chunk: after a power loss a
// journalled chunk may be lost, and the commit's sha256 check then fails the transfer (it never stores bad bytes).
import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import type { BlobRef, BlobStore } from '../blobstore/blob-store.js';
import { transferIdSchema, transferKindSchema, transferMetaSchema } from '../protocol/schemas.js';

export const transferRecordSchema = z.object({
  version: z.literal(1),
  transferId: transferIdSchema,
  owner: z.string(),
  kind: transferKindSchema,
  size: z.number().int().nonnegative(),
  sha256: z.string(),
  chunkSize: z.number().int().positive(),
  meta: transferMetaSchema,
  createdAt: z.number(),
  state: z.enum(['receiving', 'committed']),
  blob: z.object({ sha256: z.string(), size: z.number() }).optional(),
  committedAt: z.number().optional(),
  /** the receiver's onCommitted hook completed for this commit */
  delivered: z.boolean().optional(),
});
export type TransferRecord = z.output<typeof transferRecordSchema>;

export interface StagedTransfer {
  record: TransferRecord;
  /** chunk indices recorded as received (may repeat) */
  received: number[];
}

export interface ChunkStaging {
  load(transferId: string): Promise<StagedTransfer | undefined>;
  create(record: TransferRecord): Promise<void>;
  /** writes the bytes at `offset`, then records `index` as received */
  writeChunk(transferId: string, index: number, offset: number, bytes: Buffer): Promise<void>;
  saveRecord(record: TransferRecord): Promise<void>;
  /** moves the assembled data into the store, which verifies size and hash (BlobIntegrityError otherwise) */
  publish(transferId: string, store: BlobStore, expected: BlobRef): Promise<BlobRef>;
  /** drops data and journal, keeps the record (a committed transfer's tombstone) */
  discardData(transferId: string): Promise<void>;
  remove(transferId: string): Promise<void>;
  /** every staged transfer with the time of its last activity (ms since epoch) */
  list(): Promise<Array<{ transferId: string; lastActivityMs: number }>>;
}

export class StagedTransferGoneError extends Error {
  override readonly name = 'StagedTransferGoneError';
}

export class FileChunkStaging implements ChunkStaging {
  constructor(readonly dir: string) {}

  private file(transferId: string, ext: 'json' | 'part' | 'idx'): string {
    if (!transferIdSchema.safeParse(transferId).success) throw new TypeError(`bad transfer id ${transferId}`);
    return path.join(this.dir, `${transferId}.${ext}`);
  }

  async load(transferId: string): Promise<StagedTransfer | undefined> {
    let text: string;
    try {
      text = await readFile(this.file(transferId, 'json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = transferRecordSchema.safeParse(safeJson(text));
    if (!parsed.success) {
      // a record we cannot read is a transfer we cannot finish: drop it, the sender starts again
      await this.remove(transferId);
      return undefined;
    }
    const record = parsed.data;
    if (record.state === 'committed') return { record, received: [] };
    let journal: Buffer;
    try {
      journal = await readFile(this.file(transferId, 'idx'));
      await stat(this.file(transferId, 'part'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await this.remove(transferId);
      return undefined;
    }
    const received: number[] = [];
    for (let at = 0; at + 4 <= journal.length; at += 4) received.push(journal.readUInt32LE(at)); // a torn tail is ignored
    return { record, received };
  }

  async create(record: TransferRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const part = await open(this.file(record.transferId, 'part'), 'w', 0o600);
    try {
      await part.truncate(record.size); // sparse: no bytes are written until chunks arrive
    } finally {
      await part.close();
    }
    await (await open(this.file(record.transferId, 'idx'), 'w', 0o600)).close();
    await this.saveRecord(record);
  }

  async writeChunk(transferId: string, index: number, offset: number, bytes: Buffer): Promise<void> {
    await withFile(this.file(transferId, 'part'), constants.O_WRONLY, async (h) => {
      for (let done = 0; done < bytes.byteLength;) {
        const { bytesWritten } = await h.write(bytes, done, bytes.byteLength - done, offset + done);
        done += bytesWritten;
      }
    });
    const entry = Buffer.alloc(4);
    entry.writeUInt32LE(index);
    // O_APPEND without O_CREAT: a transfer removed meanwhile (abort) fails here instead of coming back
    await withFile(this.file(transferId, 'idx'), constants.O_WRONLY | constants.O_APPEND, (h) =>
      h.write(entry),
    );
  }

  async saveRecord(record: TransferRecord): Promise<void> {
    const target = this.file(record.transferId, 'json');
    const tmp = `${target}.tmp`;
    const h = await open(tmp, 'w', 0o600);
    try {
      await h.writeFile(JSON.stringify(record));
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, target);
  }

  publish(transferId: string, store: BlobStore, expected: BlobRef): Promise<BlobRef> {
    return store.putFile(this.file(transferId, 'part'), {
      move: true,
      expectedSha256: expected.sha256,
      expectedSize: expected.size,
    });
  }

  async discardData(transferId: string): Promise<void> {
    await rm(this.file(transferId, 'part'), { force: true });
    await rm(this.file(transferId, 'idx'), { force: true });
  }

  async remove(transferId: string): Promise<void> {
    await rm(this.file(transferId, 'json'), { force: true });
    await this.discardData(transferId);
  }

  async list(): Promise<Array<{ transferId: string; lastActivityMs: number }>> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: Array<{ transferId: string; lastActivityMs: number }> = [];
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const transferId = name.slice(0, -'.json'.length);
      if (!transferIdSchema.safeParse(transferId).success) continue;
      let last = 0;
      for (const ext of ['json', 'idx'] as const) {
        const st = await stat(this.file(transferId, ext)).catch(() => undefined);
        if (st) last = Math.max(last, st.mtimeMs);
      }
      out.push({ transferId, lastActivityMs: last });
    }
    return out;
  }
}

async function withFile<T>(file: string, flags: number, fn: (h: FileHandle) => Promise<T>): Promise<T> {
  let h;
  try {
    h = await open(file, flags);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new StagedTransferGoneError(`${file} is gone`);
    throw err;
  }
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
