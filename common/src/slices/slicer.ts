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
function brainPercentile(vol: NiftiVolume, slope: number, inter: number, min: number, max: number): number {
  const { data } = vol;
  const isInteger = !(data instanceof Float32Array || data instanceof Float64Array);
  if (isInteger && slope > 0) {
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

/**
 * Maps stored voxel values to canvas values: ((raw × slope + inter) / reference) × 255, the paper's order of
 * operations, so the bytes match an independent numpy/MATLAB implementation exactly. Integer data (all of BraTS)
 * goes through a table over its value range, computed once per volume with that same expression: one lookup per
 * voxel instead of a division.
 */
class VoxelScaler {
  readonly reference: number;
  private readonly slope: number;
  private readonly inter: number;
  private readonly divisor: number;
  /** canvas value per raw value - tableMin, or undefined for float data / huge ranges */
  readonly table?: Float64Array;
  /** the same as bytes (MATLAB uint8 rounding) */
  readonly byteTable?: Uint8Array;
  readonly tableMin: number;

  constructor(
    readonly volume: NiftiVolume,
    scale: IntensityScale,
  ) {
    this.slope = volume.header.hasScaling ? volume.header.sclSlope : 1;
    this.inter = volume.header.hasScaling ? volume.header.sclInter : 0;
    const { min, max } = rawRange(volume.data);
    this.tableMin = min;
    const reference =
      scale === 'max'
        ? Math.max(min * this.slope + this.inter, max * this.slope + this.inter)
        : brainPercentile(volume, this.slope, this.inter, min, max);
    this.reference = reference > 0 ? reference : 0;
    // An empty volume maps to all zeros instead of NaN.
    this.divisor = reference > 0 ? reference : Infinity;
    if (reference <= 0) this.slope = this.inter = 0;
    const integral = !(volume.data instanceof Float32Array || volume.data instanceof Float64Array);
    if (integral && max - min < TABLE_MAX_ENTRIES) {
      this.table = new Float64Array(max - min + 1);
      this.byteTable = new Uint8Array(max - min + 1);
      for (let k = 0; k < this.table.length; k++) {
        this.table[k] = this.valueOf(k + min);
        this.byteTable[k] = toByte(this.table[k]!);
      }
    }
  }

  valueOf(raw: number): number {
    return ((raw * this.slope + this.inter) / this.divisor) * 255;
  }

  /** Canvas values of `count` voxels from `src[start]` into `dst[at]`. */
  values(start: number, count: number, dst: Float64Array, at: number): void {
    const src = this.volume.data;
    const { table, tableMin } = this;
    if (table) {
      for (let i = 0; i < count; i++) dst[at + i] = table[src[start + i]! - tableMin]!;
    } else {
      for (let i = 0; i < count; i++) dst[at + i] = this.valueOf(src[start + i]!);
    }
  }

  /** Rounded bytes of `count` voxels from `src[start]` into `dst` with a stride (an NHWC channel). */
  bytes(start: number, count: number, dst: Uint8Array, at: number, stride: number): void {
    const src = this.volume.data;
    const { byteTable, tableMin } = this;
    if (byteTable) {
      for (let i = 0; i < count; i++) dst[at + i * stride] = byteTable[src[start + i]! - tableMin]!;
    } else {
      for (let i = 0; i < count; i++) dst[at + i * stride] = toByte(this.valueOf(src[start + i]!));
    }
  }

  /** How many of `count` voxels from `start` exceed `threshold` on the canvas scale. */
  countAbove(start: number, count: number, threshold: number): number {
    const src = this.volume.data;
    let n = 0;
    if (this.table) {
      const { table, tableMin } = this;
      for (let i = 0; i < count; i++) if (table[src[start + i]! - tableMin]! > threshold) n++;
    } else {
      for (let i = 0; i < count; i++) if (this.valueOf(src[start + i]!) > threshold) n++;
    }
    return n;
  }
}

const TABLE_MAX_ENTRIES = 1 << 20;

/** MATLAB's uint8(): round half away from zero, saturate — what the paper's PNGs hold. */
function toByte(value: number): number {
  return value <= 0 ? 0 : value >= 255 ? 255 : Math.round(value);
}

export function sliceCase(loaded: LoadedCase, preset: SlicePreset, scale: IntensityScale): CaseSlices {
  const [width, height, depth] = loaded.dims;
  const plane = width * height;
  const scalers = IMAGE_CHANNELS.map((m) => new VoxelScaler(loaded.images[m], scale));
  const reference = Object.fromEntries(IMAGE_CHANNELS.map((m, c) => [m, scalers[c]!.reference])) as Record<
    Modality,
    number
  >;

  // Keep rule on the padded canvas: padding is zero, so counting over the source slice is the same.
  // For BraTS's 240×240 grid this is the paper's 15 % of 256²; other grids scale it by their area, so that a
  // small test grid keeps the same anatomy a full-size one would.
  const keepAbove = KEEP_FRACTION * CANVAS_SIZE * CANVAS_SIZE * (plane / (BRATS_GRID * BRATS_GRID));
  const t1 = scalers[IMAGE_CHANNELS.indexOf('t1')]!;
  const kept: number[] = [];
  for (let z = 0; z < depth; z++) {
    if (t1.countAbove(z * plane, plane, KEEP_INTENSITY) > keepAbove) kept.push(z);
  }

  const size = preset.size;
  const factor = CANVAS_SIZE / size;
  if (!Number.isInteger(factor)) {
    throw new Error(`preset ${preset.name}: ${CANVAS_SIZE} is not a multiple of ${size}`);
  }
  const channels = SLICE_CHANNELS.length;
  const out = new Uint8Array(kept.length * size * size * channels);
  // Centre the source grid on the 256 canvas (240 → 8 px each side); larger grids are centre-cropped.
  const offX = Math.floor((CANVAS_SIZE - width) / 2);
  const offY = Math.floor((CANVAS_SIZE - height) / 2);
  const x0 = Math.max(0, offX);
  const x1 = Math.min(CANVAS_SIZE, width + offX);
  const y0 = Math.max(0, offY);
  const y1 = Math.min(CANVAS_SIZE, height + offY);
  const rowLength = x1 - x0;
  const canvas = new Float64Array(CANVAS_SIZE * CANVAS_SIZE);
  const labelCanvas = new Uint8Array(CANVAS_SIZE * CANVAS_SIZE);
  const labels = loaded.labels;
  const seg = channels - 1;

  for (let n = 0; n < kept.length; n++) {
    const sliceBase = n * size * size * channels;
    const zBase = kept[n]! * plane;
    const sourceIndex = (y: number) => zBase + (y - offY) * width + (x0 - offX);
    if (factor === 1) {
      // The paper preset: the canvas is the output, padding is already zero.
      for (let c = 0; c < scalers.length; c++) {
        for (let y = y0; y < y1; y++) {
          scalers[c]!.bytes(
            sourceIndex(y),
            rowLength,
            out,
            sliceBase + (y * size + x0) * channels + c,
            channels,
          );
        }
      }
      if (labels) {
        for (let y = y0; y < y1; y++) {
          const src = sourceIndex(y);
          const dst = sliceBase + (y * size + x0) * channels + seg;
          for (let i = 0; i < rowLength; i++)
            out[dst + i * channels] = ANNOTATION_OF_CANONICAL[labels[src + i]!]!;
        }
      }
      continue;
    }
    for (let c = 0; c < scalers.length; c++) {
      canvas.fill(0);
      for (let y = y0; y < y1; y++)
        scalers[c]!.values(sourceIndex(y), rowLength, canvas, y * CANVAS_SIZE + x0);
      writeImageChannel(canvas, out, sliceBase, c, channels, size, factor);
    }
    labelCanvas.fill(0);
    if (labels) {
      for (let y = y0; y < y1; y++) {
        const src = sourceIndex(y);
        labelCanvas.set(labels.subarray(src, src + rowLength), y * CANVAS_SIZE + x0);
      }
    }
    writeLabelChannel(labelCanvas, out, sliceBase, seg, channels, size, factor);
  }
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
