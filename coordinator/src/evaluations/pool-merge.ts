// The pool a central segmenter trains on: every site's sample store of a study merged into one slice store in
// which every slice is a labelled training slice (samples carry their own annotation channel).
import { SliceStoreReader, SliceStoreWriter, type SliceStoreMeta } from '@fedsynth/common/slices/index';

/** Slices copied per read/write: bounded memory for any pool size. */
const CHUNK_SLICES = 256;

export interface PoolSource {
  file: string;
  /** where it came from, for the subject ids and error messages (e.g. the site id) */
  name: string;
}

export interface MergedPool {
  file: string;
  slices: number;
  size: number;
  perSource: Array<{ name: string; slices: number }>;
}

export class PoolMergeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PoolMergeError';
  }
}

/** Merges slice stores of one size and channel layout into `out`; every subject becomes a training subject. */
export async function mergeSliceStores(sources: readonly PoolSource[], out: string): Promise<MergedPool> {
  if (sources.length === 0) throw new PoolMergeError('the pool is empty: no sample stores to merge');
  const readers: SliceStoreReader[] = [];
  let writer: SliceStoreWriter | undefined;
  try {
    for (const source of sources) {
      readers.push(
        await SliceStoreReader.open(source.file).catch((error: unknown) => {
          throw new PoolMergeError(`sample store of ${source.name}: ${(error as Error).message}`);
        }),
      );
    }
    const first = readers[0]!.meta;
    for (const [i, reader] of readers.entries()) checkCompatible(first, reader.meta, sources[i]!.name);
    writer = await SliceStoreWriter.create(out, {
      preset: first.preset,
      scale: first.scale,
      size: first.size,
      channels: first.channels,
      dtype: 'uint8',
      layout: 'NHWC',
      annotation: first.annotation,
      split: { seed: 0, testFraction: 0 },
      createdAt: new Date().toISOString(),
    });
    const perSource: MergedPool['perSource'] = [];
    let total = 0;
    for (const [i, reader] of readers.entries()) {
      let copied = 0;
      for (const subject of reader.meta.subjects) {
        // A subject is written in chunks: each chunk is its own subject so memory stays bounded.
        for (let start = 0; start < subject.count; start += CHUNK_SLICES) {
          const n = Math.min(CHUNK_SLICES, subject.count - start);
          const bytes = await reader.readRange(subject.first + start, n);
          await writer.addSubject(
            {
              id: `${sources[i]!.name}/${subject.id}${start > 0 ? `#${start}` : ''}`,
              split: 'train',
              labelled: true,
              z: subject.z.slice(start, start + n),
              sourceDims: subject.sourceDims,
              reference: subject.reference,
            },
            bytes,
          );
          copied += n;
        }
      }
      perSource.push({ name: sources[i]!.name, slices: copied });
      total += copied;
    }
    if (total === 0) throw new PoolMergeError('the pool has no slices');
    await writer.close();
    writer = undefined;
    return { file: out, slices: total, size: first.size, perSource };
  } finally {
    await writer?.abort();
    await Promise.all(readers.map((r) => r.close().catch(() => undefined)));
  }
}

function checkCompatible(a: SliceStoreMeta, b: SliceStoreMeta, name: string): void {
  const problems: string[] = [];
  if (a.size !== b.size) problems.push(`slices are ${b.size}² but the pool's are ${a.size}²`);
  if (a.channels.join(',') !== b.channels.join(','))
    problems.push(`channels ${b.channels.join(',')} differ from ${a.channels.join(',')}`);
  if (JSON.stringify(a.annotation) !== JSON.stringify(b.annotation))
    problems.push('annotation codes differ from the pool');
  if (problems.length) throw new PoolMergeError(`sample store of ${name}: ${problems.join('; ')}`);
}
