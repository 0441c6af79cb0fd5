// From slice-store bytes (NHWC uint8: T1, T2, FLAIR, T1ce, annotation) to what segmenters read and learn from.
import { decodeAnnotation, SLICE_CHANNELS } from '../../slices/presets.js';
import { SEGMENTATION_INPUT_CHANNELS } from '../model.js';

export interface SegmentationBatch {
  /** [n, size, size, 4] in [-1, 1]: byte / 127.5 - 1 (what the generators see too) */
  images: Float32Array;
  /** [n, size, size] canonical labels 0..3 decoded from the annotation channel */
  labels: Int32Array;
  count: number;
  size: number;
}

const CHANNELS = SLICE_CHANNELS.length;
/** annotation byte -> canonical label, by nearest level (a generator's annotation is not exactly 51/102/204) */
const LABEL_OF_BYTE = Int32Array.from({ length: 256 }, (_, v) => decodeAnnotation(v));
const SCALE_OF_BYTE = Float32Array.from({ length: 256 }, (_, v) => v / 127.5 - 1);

export function toSegmentationBatch(slices: Uint8Array, count: number, size: number): SegmentationBatch {
  const pixels = count * size * size;
  if (slices.length < pixels * CHANNELS) {
    throw new RangeError(
      `expected ${count} slices of ${size}² × ${CHANNELS} bytes, got ${slices.length} bytes`,
    );
  }
  const images = new Float32Array(pixels * SEGMENTATION_INPUT_CHANNELS);
  const labels = new Int32Array(pixels);
  for (let p = 0; p < pixels; p++) {
    const src = p * CHANNELS;
    const dst = p * SEGMENTATION_INPUT_CHANNELS;
    for (let c = 0; c < SEGMENTATION_INPUT_CHANNELS; c++) images[dst + c] = SCALE_OF_BYTE[slices[src + c]!]!;
    labels[p] = LABEL_OF_BYTE[slices[src + CHANNELS - 1]!]!;
  }
  return { images, labels, count, size };
}
