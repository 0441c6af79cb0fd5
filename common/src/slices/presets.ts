// The paper's slice preprocessing (DESIGN.md step 2) and the smaller presets for CPU machines and tests.
import type { Modality } from '../brats/modalities.js';

export type SlicePresetName = 'paper' | 'cpu64' | 'cpu32' | 'cpu16';
/** max: volume ÷ its max × 255 (the paper); percentile: ÷ the 99.5th percentile of brain voxels, clipped. */
export type IntensityScale = 'max' | 'percentile';

export interface SlicePreset {
  name: SlicePresetName;
  /** output width = height in pixels */
  size: number;
}

export const SLICE_PRESETS: Record<SlicePresetName, SlicePreset> = {
  paper: { name: 'paper', size: 256 },
  cpu64: { name: 'cpu64', size: 64 },
  cpu32: { name: 'cpu32', size: 32 },
  /** for the generators' tiny test profiles */
  cpu16: { name: 'cpu16', size: 16 },
};

export function isSlicePresetName(value: string): value is SlicePresetName {
  return value in SLICE_PRESETS;
}

/** Channel order of every slice: what the generators see (DESIGN.md), the annotation last. */
export const SLICE_CHANNELS = ['t1', 't2', 'flair', 't1ce', 'seg'] as const;
export type SliceChannel = (typeof SLICE_CHANNELS)[number];
export const IMAGE_CHANNELS: readonly Modality[] = ['t1', 't2', 'flair', 't1ce'];

/** The paper pads 240×240 to a 256×256 canvas (8 px each side) before anything else. */
export const CANVAS_SIZE = 256;
/** BraTS volumes are 240×240 in-plane; other grids are centred on the canvas (padded or cropped). */
export const BRATS_GRID = 240;
/** A slice is kept when more than this fraction of the 256×256 T1 pixels exceed KEEP_INTENSITY. */
export const KEEP_FRACTION = 0.15;
export const KEEP_INTENSITY = 50;
export const PERCENTILE = 99.5;

/** Annotation channel = label × 255/5 in the 2017 codes: NCR 1→51, ED 2→102, ET 4→204. */
export const ANNOTATION_STEP = 255 / 5;
/** canonical label (0 bg, 1 NCR, 2 ED, 3 ET) -> annotation byte */
export const ANNOTATION_OF_CANONICAL = Uint8Array.of(0, 51, 102, 204);

/** Nearest-level decoding of an annotation value (a generator's output is continuous): -> canonical label. */
export function decodeAnnotation(value: number): 0 | 1 | 2 | 3 {
  if (value > 3.0 * ANNOTATION_STEP) return 3;
  if (value > 1.5 * ANNOTATION_STEP) return 2;
  if (value > 0.5 * ANNOTATION_STEP) return 1;
  return 0;
}
