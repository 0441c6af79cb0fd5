// Content-addressed blob storage: a blob's address is the sha256 of its bytes, so identical content is stored once
// and a reader can always check what it got. FileBlobStore keeps blobs on local disk; an S3-compatible store can
// implement the same interface (put with a known sha256 → PutObject with x-amz-checksum-sha256 to the final key;
// without → multipart upload to a temporary key, then copy to `<sha256>` and delete; read ranges → ranged GET).
import type { Readable } from 'node:stream';

export interface BlobRef {
  /** lowercase hex sha256 of the content: the blob's address */
  sha256: string;
  size: number;
}

export interface PutOptions {
  /** refuse (and store nothing) unless the content hashes to this */
  expectedSha256?: string;
  /** refuse (and store nothing) unless the content has exactly this many bytes */
  expectedSize?: number;
}

export interface PutFileOptions extends PutOptions {
  /**
   * The caller hands the file over: the store may move it into place instead of copying (a rename on the same
   * file system) and removes it once stored. The caller must not write to it any more.
   */
  move?: boolean;
}

/** A byte range of a blob: `length` bytes from `offset` (clamped to the blob's end). */
export interface BlobRange {
  offset: number;
  length: number;
}

export interface BlobStore {
  /** Stores a file's content; the hash is computed from the bytes actually stored. */
  putFile(path: string, options?: PutFileOptions): Promise<BlobRef>;
  /** Stores a stream's content (of unknown length) while hashing it. */
  putStream(source: Readable | AsyncIterable<Uint8Array>, options?: PutOptions): Promise<BlobRef>;
  has(sha256: string): Promise<boolean>;
  /** undefined when absent */
  stat(sha256: string): Promise<BlobRef | undefined>;
  /** Rejects with BlobNotFoundError when absent. */
  createReadStream(sha256: string, range?: BlobRange): Promise<Readable>;
  /** true when something was deleted. Reference counting (who still needs a blob) belongs to the caller. */
  delete(sha256: string): Promise<boolean>;
  /** every stored blob, in no particular order */
  list?(): AsyncIterable<BlobRef>;
}

export class BlobNotFoundError extends Error {
  override readonly name = 'BlobNotFoundError';
  constructor(readonly sha256: string) {
    super(`no blob ${sha256}`);
  }
}

export class BlobIntegrityError extends Error {
  override readonly name = 'BlobIntegrityError';
  constructor(
    readonly code: 'sha_mismatch' | 'size_mismatch',
    message: string,
    readonly actual: BlobRef,
  ) {
    super(message);
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256Hex(value: unknown): value is string {
  return typeof value === 'string' && SHA256_HEX.test(value);
}

/** Addresses reach file paths and object keys: anything but 64 lowercase hex digits is refused. */
export function assertSha256Hex(value: unknown): asserts value is string {
  if (!isSha256Hex(value))
    throw new TypeError(`not a sha256 blob address: ${JSON.stringify(value)?.slice(0, 80)}`);
}

/** Throws BlobIntegrityError when `actual` is not what the caller expected. */
export function checkExpected(actual: BlobRef, options: PutOptions): void {
  if (options.expectedSize !== undefined && actual.size !== options.expectedSize) {
    throw new BlobIntegrityError(
      'size_mismatch',
      `content has ${actual.size} bytes, expected ${options.expectedSize}`,
      actual,
    );
  }
  if (options.expectedSha256 !== undefined && actual.sha256 !== options.expectedSha256) {
    throw new BlobIntegrityError(
      'sha_mismatch',
      `content hashes to sha256 ${actual.sha256}, expected ${options.expectedSha256}`,
      actual,
    );
  }
}
