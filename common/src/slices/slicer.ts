// Turns one loaded case into 5-channel axial slices: the paper's intensity scaling, padding to 256×256, the
// keep rule on T1, the annotation encoding, then (for the CPU presets) area-averaged downsampling.
import type { LoadedCase } from '../brats/case-loader.js';
import type { Modality } from '../brats/modalities.js';
import type { NiftiVolume } from '../nifti/index.js';
import {
  ANNOTATION_OF_CANONICAL,
  CANVAS_SIZE,
  IMAGE_CHANNELS,
  KEEP_FRACTION,
  KEEP_INTENSITY,
  PERCENTILE,
  SLICE_CHANNELS,
  BRATS_GRID,
  type IntensityScale,
  type SlicePreset,
} from './presets.js';

export interface CaseSlices {
  /** axial indices of the kept slices, ascending */
  z: number[];
  /** kept slices, NHWC uint8 in SLICE_CHANNELS order, size×size each */
  data: Uint8Array;
  /** per image channel, the intensity that mapped to 255 */
  reference: Record<Modality, number>;
}

interface IntensityMap {
  /** canvas value = ((raw × slope + inter) / reference) × 255, the paper's order of operations, so that the
   * bytes match an independent numpy/MATLAB implementation exactly */
  slope: number;
  inter: number;
  reference: number;
}

function rawRange(data: ArrayLike<number>): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

/** The 99.5th percentile of the brain (value > 0), exact: a histogram for integer data, a sort for floats. */
function brainPercentile(vol: NiftiVolume, slope: number, inter: number): number {
  const { data } = vol;
  const isInteger = !(data instanceof Float32Array || data instanceof Float64Array);
  if (isInteger && slope > 0) {
    const { min, max } = rawRange(data);
    if (max - min < 1 << 24) {
      const counts = new Float64Array(max - min + 1);
      let total = 0;
      for (let i = 0; i < data.length; i++) {
        const raw = data[i]!;
        if (raw * slope + inter > 0) {
          counts[raw - min]!++;
          total++;
        }
      }
      if (total === 0) return 0;
      const rank = Math.ceil((PERCENTILE / 100) * total);
      let seen = 0;
      for (let k = 0; k < counts.length; k++) {
        seen += counts[k]!;
        if (seen >= rank) return (k + min) * slope + inter;
      }
    }
  }
  const brain: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const v = data[i]! * slope + inter;
    if (v > 0) brain.push(v);
  }
  if (brain.length === 0) return 0;
  const sorted = Float64Array.from(brain).sort();
  return sorted[Math.max(0, Math.ceil((PERCENTILE / 100) * sorted.length) - 1)]!;
}

function intensityMap(vol: NiftiVolume, scale: IntensityScale): IntensityMap {
  const slope = vol.header.hasScaling ? vol.header.sclSlope : 1;
  const inter = vol.header.hasScaling ? vol.header.sclInter : 0;
  let reference: number;
  if (scale === 'max') {
    const { min, max } = rawRange(vol.data);
    reference = Math.max(min * slope + inter, max * slope + inter);
  } else {
    reference = brainPercentile(vol, slope, inter);
  }
  // An empty volume (reference 0) maps to all zeros instead of NaN.
  return reference > 0 ? { slope, inter, reference } : { slope: 0, inter: 0, reference: Infinity };
}

/** MATLAB's uint8(): round half away from zero, saturate — what the paper's PNGs hold. */
function toByte(value: number): number {
  return value <= 0 ? 0 : value >= 255 ? 255 : Math.round(value);
}

export function sliceCase(loaded: LoadedCase, preset: SlicePreset, scale: IntensityScale): CaseSlices {
  const [width, height, depth] = loaded.dims;
  const plane = width * height;
  const maps = {} as Record<Modality, IntensityMap>;
  const reference = {} as Record<Modality, number>;
  for (const m of IMAGE_CHANNELS) {
    maps[m] = intensityMap(loaded.images[m], scale);
    reference[m] = Number.isFinite(maps[m].reference) ? maps[m].reference : 0;
  }

  // Keep rule on the padded canvas: padding is zero, so counting over the source slice is the same.
  const t1 = loaded.images.t1.data;
  const { slope: t1Slope, inter: t1Inter, reference: t1Reference } = maps.t1;
  // For BraTS's 240×240 grid this is the paper's 15 % of 256²; other grids scale it by their area, so that a
  // small test grid keeps the same anatomy a full-size one would.
  const keepAbove = KEEP_FRACTION * CANVAS_SIZE * CANVAS_SIZE * (plane / (BRATS_GRID * BRATS_GRID));
  const kept: number[] = [];
  for (let z = 0; z < depth; z++) {
    let bright = 0;
    const base = z * plane;
    for (let i = 0; i < plane; i++) {
      if (((t1[base + i]! * t1Slope + t1Inter) / t1Reference) * 255 > KEEP_INTENSITY) bright++;
    }
    if (bright > keepAbove) kept.push(z);
  }

  const size = preset.size;
  const factor = CANVAS_SIZE / size;
  if (!Number.isInteger(factor))
    throw new Error(`preset ${preset.name}: ${CANVAS_SIZE} is not a multiple of ${size}`);
  const channels = SLICE_CHANNELS.length;
  const out = new Uint8Array(kept.length * size * size * channels);
  // Centre the source grid on the 256 canvas (240 → 8 px each side); larger grids are centre-cropped.
  const offX = Math.floor((CANVAS_SIZE - width) / 2);
  const offY = Math.floor((CANVAS_SIZE - height) / 2);
  const canvas = new Float64Array(CANVAS_SIZE * CANVAS_SIZE);
  const labelCanvas = new Uint8Array(CANVAS_SIZE * CANVAS_SIZE);
  const x0 = Math.max(0, offX);
  const x1 = Math.min(CANVAS_SIZE, width + offX);
  const y0 = Math.max(0, offY);
  const y1 = Math.min(CANVAS_SIZE, height + offY);

  kept.forEach((z, n) => {
    const sliceBase = n * size * size * channels;
    const zBase = z * plane;
    IMAGE_CHANNELS.forEach((m, c) => {
      const src = loaded.images[m].data;
      const { slope, inter, reference: ref } = maps[m];
      canvas.fill(0);
      for (let y = y0; y < y1; y++) {
        const srcRow = zBase + (y - offY) * width - offX;
        const dstRow = y * CANVAS_SIZE;
        for (let x = x0; x < x1; x++) canvas[dstRow + x] = ((src[srcRow + x]! * slope + inter) / ref) * 255;
      }
      writeImageChannel(canvas, out, sliceBase, c, channels, size, factor);
    });
    labelCanvas.fill(0);
    if (loaded.labels) {
      const labels = loaded.labels;
      for (let y = y0; y < y1; y++) {
        const srcRow = zBase + (y - offY) * width - offX;
        const dstRow = y * CANVAS_SIZE;
        for (let x = x0; x < x1; x++) labelCanvas[dstRow + x] = labels[srcRow + x]!;
      }
    }
    writeLabelChannel(labelCanvas, out, sliceBase, channels - 1, channels, size, factor);
  });
  return { z: kept, data: out, reference };
}

/** Area average over factor×factor blocks (factor 1: the canvas itself), rounded to bytes. */
function writeImageChannel(
  canvas: Float64Array,
  out: Uint8Array,
  sliceBase: number,
  channel: number,
  channels: number,
  size: number,
  factor: number,
): void {
  const area = factor * factor;
  for (let oy = 0; oy < size; oy++) {
    for (let ox = 0; ox < size; ox++) {
      let sum = 0;
      for (let dy = 0; dy < factor; dy++) {
        const row = (oy * factor + dy) * CANVAS_SIZE + ox * factor;
        for (let dx = 0; dx < factor; dx++) sum += canvas[row + dx]!;
      }
      out[sliceBase + (oy * size + ox) * channels + channel] = toByte(sum / area);
    }
  }
}

// Ties between classes go to the rarer, clinically more important one: ET, then NCR, then ED, then background.
const TIE_PRIORITY = [3, 1, 2, 0] as const;

/** Majority label over factor×factor blocks, encoded as the annotation byte. */
function writeLabelChannel(
  labels: Uint8Array,
  out: Uint8Array,
  sliceBase: number,
  channel: number,
  channels: number,
  size: number,
  factor: number,
): void {
  const counts = new Int32Array(4);
  for (let oy = 0; oy < size; oy++) {
    for (let ox = 0; ox < size; ox++) {
      counts.fill(0);
      for (let dy = 0; dy < factor; dy++) {
        const row = (oy * factor + dy) * CANVAS_SIZE + ox * factor;
        for (let dx = 0; dx < factor; dx++) counts[labels[row + dx]!]!++;
      }
      let best: number = TIE_PRIORITY[0];
      for (const label of TIE_PRIORITY) if (counts[label]! > counts[best]!) best = label;
      out[sliceBase + (oy * size + ox) * channels + channel] = ANNOTATION_OF_CANONICAL[best]!;
    }
  }
}
