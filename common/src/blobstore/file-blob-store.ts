// Blobs on local disk at `<root>/ab/cd/<sha256>` (two levels of fan-out), written to `<root>/.tmp/` while hashing,
// fsynced, then renamed into place: a reader never sees a partial blob and a crash leaves only a temp file.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  type BlobRange,
  type BlobRef,
  type BlobStore,
  BlobNotFoundError,
  type PutFileOptions,
  type PutOptions,
  assertSha256Hex,
  checkExpected,
  isSha256Hex,
} from './blob-store.js';

const TMP_DIR = '.tmp';

export interface FileBlobStoreOptions {
  /** fsync each blob and its directory before reporting it stored (default true) */
  durable?: boolean;
}

export class FileBlobStore implements BlobStore {
  readonly rootDir: string;
  private readonly durable: boolean;

  constructor(rootDir: string, options: FileBlobStoreOptions = {}) {
    this.rootDir = path.resolve(rootDir);
    this.durable = options.durable ?? true;
  }

  /** Where a blob lives (whether or not it exists). */
  pathOf(sha256: string): string {
    assertSha256Hex(sha256);
    return path.join(this.rootDir, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  async putStream(source: Readable | AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<BlobRef> {
    if (options.expectedSha256 !== undefined) assertSha256Hex(options.expectedSha256);
    const tmp = await this.tempPath();
    const hash = createHash('sha256');
    let size = 0;
    const handle = await open(tmp, 'wx', 0o600);
    try {
      for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        hash.update(bytes);
        size += bytes.byteLength;
        if (options.expectedSize !== undefined && size > options.expectedSize) {
          checkExpected({ sha256: 'unknown (too long)', size }, options);
        }
        await handle.write(bytes);
      }
      if (this.durable) await handle.sync();
      await handle.close();
      const ref = { sha256: hash.digest('hex'), size };
      checkExpected(ref, options);
      return await this.install(tmp, ref);
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async putFile(file: string, options: PutFileOptions = {}): Promise<BlobRef> {
    if (!options.move) return this.putStream(createReadStream(file), options);
    if (options.expectedSha256 !== undefined) assertSha256Hex(options.expectedSha256);
    // Moving: hash in place (one read), then rename; no copy when the file is on the store's file system.
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(file, {
      highWaterMark: 1024 * 1024,
    }) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.byteLength;
    }
    const ref = { sha256: hash.digest('hex'), size };
    checkExpected(ref, options);
    if (this.durable) {
      const h = await open(file, 'r');
      await h.sync().finally(() => h.close());
    }
    try {
      return await this.install(file, ref);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      const stored = await this.putStream(createReadStream(file), {
        expectedSha256: ref.sha256,
        expectedSize: size,
      });
      await rm(file, { force: true });
      return stored;
    }
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.stat(sha256)) !== undefined;
  }

  async stat(sha256: string): Promise<BlobRef | undefined> {
    try {
      const st = await stat(this.pathOf(sha256));
      return st.isFile() ? { sha256, size: st.size } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async createReadStream(sha256: string, range?: BlobRange): Promise<Readable> {
    const ref = await this.stat(sha256);
    if (!ref) throw new BlobNotFoundError(sha256);
    if (!range) return createReadStream(this.pathOf(sha256));
    if (
      !Number.isInteger(range.offset) ||
      !Number.isInteger(range.length) ||
      range.offset < 0 ||
      range.length < 0
    ) {
      throw new RangeError(`bad blob range ${JSON.stringify(range)}`);
    }
    const end = Math.min(range.offset + range.length, ref.size);
    if (end <= range.offset) return Readable.from([]);
    return createReadStream(this.pathOf(sha256), { start: range.offset, end: end - 1 });
  }

  async delete(sha256: string): Promise<boolean> {
    const file = this.pathOf(sha256);
    const existed = await this.stat(sha256);
    await rm(file, { force: true });
    return existed !== undefined;
  }

  async *list(): AsyncIterable<BlobRef> {
    for (const a of await readdirOrEmpty(this.rootDir)) {
      if (!/^[0-9a-f]{2}$/.test(a)) continue;
      for (const b of await readdirOrEmpty(path.join(this.rootDir, a))) {
        if (!/^[0-9a-f]{2}$/.test(b)) continue;
        for (const name of await readdirOrEmpty(path.join(this.rootDir, a, b))) {
          if (!isSha256Hex(name) || !name.startsWith(a + b)) continue;
          const ref = await this.stat(name);
          if (ref) yield ref;
        }
      }
    }
  }

  /** Re-hashes a stored blob: false when its bytes no longer match its address (bit rot, tampering). */
  async verify(sha256: string): Promise<boolean> {
    const hash = createHash('sha256');
    for await (const chunk of await this.createReadStream(sha256)) hash.update(chunk as Buffer);
    return hash.digest('hex') === sha256;
  }

  /** Removes temp files left by crashed writers, older than `olderThanMs`. */
  async sweepTemp(olderThanMs = 24 * 3600 * 1000, now = Date.now()): Promise<number> {
    const dir = path.join(this.rootDir, TMP_DIR);
    let removed = 0;
    for (const name of await readdirOrEmpty(dir)) {
      const file = path.join(dir, name);
      const st = await stat(file).catch(() => undefined);
      if (st && now - st.mtimeMs > olderThanMs) {
        await rm(file, { force: true });
        removed++;
      }
    }
    return removed;
  }

  private async tempPath(): Promise<string> {
    const dir = path.join(this.rootDir, TMP_DIR);
    await mkdir(dir, { recursive: true });
    return path.join(dir, `${randomUUID()}.partial`);
  }

  /** Renames a verified file into its address, or drops it when the blob is already there (dedupe). */
  private async install(file: string, ref: BlobRef): Promise<BlobRef> {
    const final = this.pathOf(ref.sha256);
    const existing = await this.stat(ref.sha256);
    if (existing && existing.size === ref.size) {
      await rm(file, { force: true });
      return ref;
    }
    await mkdir(path.dirname(final), { recursive: true });
    await chmod(file, 0o444); // blobs are immutable
    await rename(file, final);
    if (this.durable) await fsyncDir(path.dirname(final));
    return ref;
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const h = await open(dir, 'r');
    await h.sync().finally(() => h.close());
  } catch {
    // not supported everywhere (Windows); the file itself was synced
  }
}
