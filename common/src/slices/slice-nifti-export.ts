// Writes a slice store as one 4-D NIfTI [W, H, N, 5] (uint8) that any NIfTI viewer or nibabel can open.
// Streams channel by channel so memory stays at one batch of slices, whatever the store's size.
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { encodeNiftiHeader } from '../nifti/index.js';
import { CANVAS_SIZE } from './presets.js';
import { SliceStoreReader } from './slice-store.js';

const BATCH_SLICES = 64;

/** Returns the path written. `onProgress(done, total)` counts channels. */
export async function exportSliceStoreNifti(
  storeFile: string,
  out: string,
  onProgress?: (done: number, total: number) => void,
): Promise<string> {
  const store = await SliceStoreReader.open(storeFile);
  const temp = `${out}.partial`;
  try {
    const { size, count, channels } = store.meta;
    const pixel = CANVAS_SIZE / size;
    const header = encodeNiftiHeader({
      dims: [size, size, Math.max(count, 1), channels.length],
      datatype: 'uint8',
      pixdim: [pixel, pixel, 1, 1],
      description: `fedsynth slices ${store.meta.preset} ${channels.join(',')}`,
    });
    const plane = size * size;
    // A generator feeding a pipeline: back-pressure, and any stream's error (disk full, missing folder) rejects.
    async function* voxels(): AsyncGenerator<Uint8Array> {
      yield header;
      for (let c = 0; c < channels.length; c++) {
        for (let start = 0; start < count; start += BATCH_SLICES) {
          const n = Math.min(BATCH_SLICES, count - start);
          const slices = await store.readRange(start, n);
          const planes = new Uint8Array(n * plane);
          // NHWC slice (row y, column x) -> planar x-fastest: the same pixel order, one channel picked out.
          for (let k = 0; k < n; k++) {
            const src = k * plane * channels.length;
            const dst = k * plane;
            for (let p = 0; p < plane; p++) planes[dst + p] = slices[src + p * channels.length + c]!;
          }
          yield planes;
        }
        if (count === 0) yield new Uint8Array(plane);
        onProgress?.(c + 1, channels.length);
      }
    }
    const file = createWriteStream(temp);
    if (out.endsWith('.gz')) await pipeline(Readable.from(voxels()), createGzip({ level: 6 }), file);
    else await pipeline(Readable.from(voxels()), file);
    await rename(temp, out);
    return out;
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  } finally {
    await store.close();
  }
}
