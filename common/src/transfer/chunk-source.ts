// Where a sender's bytes come from: a file (read a chunk at a time, never whole), a Buffer, or a stored blob.
import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import type { BlobRef, BlobStore } from '../blobstore/blob-store.js';
import { TransferError } from './transfer-error.js';

export interface ChunkSource {
  readonly size: number;
  /** sha256 of the whole content; computed once (streaming) and remembered */
  sha256(): Promise<string>;
  /**
   * Exactly `length` bytes from `offset`: into `target` when given (returning `target.subarray(0, length)`), else
   * in a fresh Buffer.
   */
  read(offset: number, length: number, target?: Buffer): Promise<Buffer>;
  /** throws TransferError('source_changed') when the content may differ from what was hashed */
  checkUnchanged(): Promise<void>;
  close(): Promise<void>;
}

export function bufferChunkSource(data: Buffer): ChunkSource {
  let sha: string | undefined;
  return {
    size: data.byteLength,
    async sha256() {
      return (sha ??= createHash('sha256').update(data).digest('hex'));
    },
    async read(offset, length, target) {
      const out = target ? target.subarray(0, length) : Buffer.allocUnsafe(length);
      data.copy(out, 0, offset, offset + length); // a copy: the caller may hold or modify it
      return out;
    },
    async checkUnchanged() {},
    async close() {},
  };
}

/** A file opened once; its size, mtime and inode are checked before every (re)send. */
export async function fileChunkSource(file: string, options: { sha256?: string } = {}): Promise<ChunkSource> {
  const handle: FileHandle = await open(file, 'r');
  const first = await handle.stat();
  let sha = options.sha256;
  return {
    size: first.size,
    async sha256() {
      if (sha === undefined) {
        // through the open handle (the inode checkUnchanged watches), one reused 1 MiB buffer
        const hash = createHash('sha256');
        const buf = Buffer.allocUnsafe(1024 * 1024);
        for (let offset = 0; offset < first.size;) {
          const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, first.size - offset), offset);
          if (bytesRead === 0)
            throw new TransferError('source_changed', `${file} is shorter than it was`, false);
          hash.update(buf.subarray(0, bytesRead));
          offset += bytesRead;
        }
        sha = hash.digest('hex');
      }
      return sha;
    },
    async read(offset, length, target) {
      const buf = target ? target.subarray(0, length) : Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buf, filled, length - filled, offset + filled);
        if (bytesRead === 0)
          throw new TransferError('source_changed', `${file} is shorter than it was`, false);
        filled += bytesRead;
      }
      return buf;
    },
    async checkUnchanged() {
      const now = await handle.stat();
      if (now.size !== first.size || now.mtimeMs !== first.mtimeMs || now.ino !== first.ino) {
        throw new TransferError('source_changed', `${file} changed while it was being sent`, false);
      }
    },
    close: () => handle.close(),
  };
}

/** A blob from a store (for the coordinator sending weights down); chunks are ranged reads. */
export function blobChunkSource(store: BlobStore, ref: BlobRef): ChunkSource {
  return {
    size: ref.size,
    sha256: async () => ref.sha256,
    async read(offset, length, target) {
      const out = target ? target.subarray(0, length) : Buffer.allocUnsafe(length);
      let filled = 0;
      for await (const part of await store.createReadStream(ref.sha256, { offset, length })) {
        const b = part as Buffer;
        b.copy(out, filled);
        filled += b.byteLength;
      }
      if (filled !== length)
        throw new TransferError('source_changed', `blob ${ref.sha256} is shorter than ${ref.size}`, false);
      return out;
    },
    async checkUnchanged() {
      if (!(await store.has(ref.sha256))) {
        throw new TransferError('source_changed', `blob ${ref.sha256} is no longer stored`, false);
      }
    },
    async close() {},
  };
}
