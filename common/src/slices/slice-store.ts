// The slice store: a single binary file of 5-channel uint8 slices that can be read a slice or a batch at a time.
//
// Layout (all integers little-endian):
//   [0, 16)          preamble: ASCII "FEDSYNTH" + "SLC1" (format version 1) + uint32 0 (reserved)
//   [16, 16 + N·B)   N slices of B = size·size·channels bytes each, NHWC (row y, column x, channel)
//   [.., ..+L)       metadata: UTF-8 JSON (SliceStoreMeta)
//   last 16 bytes    trailer: uint64 metadata offset, uint32 metadata length L, ASCII "FSS1"
// The metadata sits at the end so a writer can stream slices without knowing their count in advance.
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import type { Split } from './subject-split.js';
import type { IntensityScale, SlicePresetName } from './presets.js';

const PREAMBLE = Buffer.from('FEDSYNTHSLC1\0\0\0\0', 'latin1');
const TRAILER_MAGIC = 'FSS1';
const TRAILER_BYTES = 16;
export const SLICE_DATA_OFFSET = PREAMBLE.length;

export interface SliceStoreSubject {
  id: string;
  split: Split;
  /** false for a case accepted without annotation (usable for generation only); its seg channel is 0 */
  labelled: boolean;
  /** index of the subject's first slice in the store; its slices are contiguous */
  first: number;
  count: number;
  /** axial index of each slice in the source volume */
  z: number[];
  sourceDims: [number, number, number];
  /** intensity that mapped to 255, per image channel */
  reference: Record<string, number>;
}

export interface SliceStoreMeta {
  format: 'fedsynth-slices';
  version: 1;
  preset: SlicePresetName;
  scale: IntensityScale;
  size: number;
  channels: string[];
  dtype: 'uint8';
  layout: 'NHWC';
  /** annotation byte per canonical class */
  annotation: { NCR: number; ED: number; ET: number };
  count: number;
  sliceBytes: number;
  dataOffset: number;
  split: { seed: number; testFraction: number };
  subjects: SliceStoreSubject[];
  createdAt: string;
}

export type SliceStoreMetaInit = Omit<
  SliceStoreMeta,
  'count' | 'sliceBytes' | 'dataOffset' | 'subjects' | 'format' | 'version'
>;

export class SliceStoreWriter {
  private position = SLICE_DATA_OFFSET;
  private count = 0;
  private readonly subjects: SliceStoreSubject[] = [];
  private readonly sliceBytes: number;

  private constructor(
    private readonly file: string,
    private readonly tempFile: string,
    private readonly handle: FileHandle,
    private readonly init: SliceStoreMetaInit,
  ) {
    this.sliceBytes = init.size * init.size * init.channels.length;
  }

  /** Writes to `file + '.partial'` and renames on close, so a crash never leaves a store that looks complete. */
  static async create(file: string, init: SliceStoreMetaInit): Promise<SliceStoreWriter> {
    const tempFile = `${file}.partial`;
    const handle = await open(tempFile, 'w');
    await handle.write(PREAMBLE, 0, PREAMBLE.length, 0);
    return new SliceStoreWriter(file, tempFile, handle, init);
  }

  async addSubject(subject: Omit<SliceStoreSubject, 'first' | 'count'>, slices: Uint8Array): Promise<void> {
    if (slices.length !== subject.z.length * this.sliceBytes) {
      throw new Error(
        `slice store ${this.file}: subject ${subject.id} has ${slices.length} bytes for ${subject.z.length} slices of ${this.sliceBytes}`,
      );
    }
    if (slices.length > 0) await this.handle.write(slices, 0, slices.length, this.position);
    this.position += slices.length;
    this.subjects.push({ ...subject, first: this.count, count: subject.z.length });
    this.count += subject.z.length;
  }

  async close(): Promise<SliceStoreMeta> {
    const meta: SliceStoreMeta = {
      format: 'fedsynth-slices',
      version: 1,
      ...this.init,
      count: this.count,
      sliceBytes: this.sliceBytes,
      dataOffset: SLICE_DATA_OFFSET,
      subjects: this.subjects,
    };
    const json = Buffer.from(JSON.stringify(meta), 'utf8');
    const trailer = Buffer.alloc(TRAILER_BYTES);
    trailer.writeBigUInt64LE(BigInt(this.position), 0);
    trailer.writeUInt32LE(json.length, 8);
    trailer.write(TRAILER_MAGIC, 12, 'latin1');
    await this.handle.write(json, 0, json.length, this.position);
    await this.handle.write(trailer, 0, TRAILER_BYTES, this.position + json.length);
    await this.handle.close();
    await rename(this.tempFile, this.file);
    return meta;
  }

  /** Abandon the store: nothing is left behind. */
  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await rm(this.tempFile, { force: true });
  }
}

export class SliceStoreFormatError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'SliceStoreFormatError';
  }
}

export class SliceStoreReader {
  private constructor(
    readonly file: string,
    private readonly handle: FileHandle,
    readonly meta: SliceStoreMeta,
  ) {}

  /** Reads only the preamble, trailer and metadata; slices are read on demand. */
  static async open(file: string): Promise<SliceStoreReader> {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      if (size < PREAMBLE.length + TRAILER_BYTES)
        throw new SliceStoreFormatError(file, 'too short to be a slice store');
      const preamble = Buffer.alloc(PREAMBLE.length);
      await handle.read(preamble, 0, preamble.length, 0);
      if (!preamble.subarray(0, 8).equals(PREAMBLE.subarray(0, 8))) {
        throw new SliceStoreFormatError(file, 'not a fedsynth slice store (bad magic)');
      }
      if (!preamble.subarray(8, 12).equals(PREAMBLE.subarray(8, 12))) {
        throw new SliceStoreFormatError(
          file,
          `unsupported slice store version "${preamble.toString('latin1', 8, 12)}"`,
        );
      }
      const trailer = Buffer.alloc(TRAILER_BYTES);
      await handle.read(trailer, 0, TRAILER_BYTES, size - TRAILER_BYTES);
      if (trailer.toString('latin1', 12, 16) !== TRAILER_MAGIC) {
        throw new SliceStoreFormatError(file, 'truncated or unfinished (no trailer)');
      }
      const metaOffset = Number(trailer.readBigUInt64LE(0));
      const metaLength = trailer.readUInt32LE(8);
      if (metaOffset + metaLength + TRAILER_BYTES !== size) {
        throw new SliceStoreFormatError(file, 'metadata offset does not match the file size (corrupt)');
      }
      const json = Buffer.alloc(metaLength);
      await handle.read(json, 0, metaLength, metaOffset);
      const meta = JSON.parse(json.toString('utf8')) as SliceStoreMeta;
      if (meta.dataOffset + meta.count * meta.sliceBytes !== metaOffset) {
        throw new SliceStoreFormatError(
          file,
          `metadata says ${meta.count} slices but the data section disagrees`,
        );
      }
      return new SliceStoreReader(file, handle, meta);
    } catch (error) {
      await handle.close();
      if (error instanceof SyntaxError) throw new SliceStoreFormatError(file, `metadata is not valid JSON`);
      throw error;
    }
  }

  get count(): number {
    return this.meta.count;
  }

  /** `count` consecutive slices from `start`, NHWC. */
  async readRange(start: number, count: number): Promise<Uint8Array> {
    if (start < 0 || count < 0 || start + count > this.meta.count) {
      throw new RangeError(
        `${this.file}: slices [${start}, ${start + count}) outside [0, ${this.meta.count})`,
      );
    }
    const out = new Uint8Array(count * this.meta.sliceBytes);
    if (count > 0) {
      await this.handle.read(out, 0, out.length, this.meta.dataOffset + start * this.meta.sliceBytes);
    }
    return out;
  }

  /** Arbitrary slices (a shuffled batch), NHWC in the order given. */
  async readIndices(indices: readonly number[]): Promise<Uint8Array> {
    const bytes = this.meta.sliceBytes;
    const out = new Uint8Array(indices.length * bytes);
    await Promise.all(
      indices.map(async (index, k) => {
        if (!(index >= 0 && index < this.meta.count)) throw new RangeError(`${this.file}: no slice ${index}`);
        await this.handle.read(out, k * bytes, bytes, this.meta.dataOffset + index * bytes);
      }),
    );
    return out;
  }

  /** Indices of every slice of the subjects in a split (and, optionally, only labelled ones). */
  indicesOf(split: Split, options: { labelledOnly?: boolean } = {}): number[] {
    const out: number[] = [];
    for (const s of this.meta.subjects) {
      if (s.split !== split || (options.labelledOnly && !s.labelled)) continue;
      for (let i = 0; i < s.count; i++) out.push(s.first + i);
    }
    return out;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
