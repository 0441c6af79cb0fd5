// PNG previews of 5-channel slices: one row per slice, the four sequences in grey and the annotation in colour.
import { PNG } from 'pngjs';
import { decodeAnnotation } from '../slices/presets.js';

/** Annotation colours (canonical label -> RGB): NCR red, ED green, ET yellow, as BraTS figures usually show. */
const LABEL_RGB: readonly (readonly [number, number, number])[] = [
  [0, 0, 0],
  [220, 40, 40],
  [60, 200, 60],
  [250, 220, 40],
];

export interface SliceGridOptions {
  /** slice width = height */
  size: number;
  /** channels per slice in the data (the last one is the annotation) */
  channels: number;
  /** pixels between tiles */
  gap?: number;
  /** integer upscaling of small slices so a 32² preview is still readable */
  zoom?: number;
}

/** Renders `count` NHWC uint8 slices as a PNG (rows = slices, columns = channels). */
export function renderSliceGrid(slices: Uint8Array, count: number, options: SliceGridOptions): Buffer {
  const { size, channels } = options;
  const gap = options.gap ?? 2;
  const zoom = options.zoom ?? Math.max(1, Math.floor(128 / size));
  const tile = size * zoom;
  const width = channels * tile + (channels - 1) * gap;
  const height = Math.max(1, count * tile + Math.max(0, count - 1) * gap);
  const png = new PNG({ width, height });
  png.data.fill(0);
  for (let i = 3; i < png.data.length; i += 4) png.data[i] = 255;
  const sliceBytes = size * size * channels;
  for (let n = 0; n < count; n++) {
    for (let c = 0; c < channels; c++) {
      const isAnnotation = c === channels - 1;
      const left = c * (tile + gap);
      const top = n * (tile + gap);
      for (let y = 0; y < tile; y++) {
        for (let x = 0; x < tile; x++) {
          const value =
            slices[n * sliceBytes + (Math.floor(y / zoom) * size + Math.floor(x / zoom)) * channels + c]!;
          const [r, g, b] = isAnnotation ? LABEL_RGB[decodeAnnotation(value)]! : [value, value, value];
          const o = ((top + y) * width + left + x) * 4;
          png.data[o] = r;
          png.data[o + 1] = g;
          png.data[o + 2] = b;
        }
      }
    }
  }
  return PNG.sync.write(png);
}
