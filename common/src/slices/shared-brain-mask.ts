// One brain mask for all four sequences. Skull-stripped scans (BraTS) are exactly 0 outside the brain in every
// sequence alike, so in a real slice a pixel is black in all four sequences or in none (the phantom store: brain
// pixel counts per sequence within 0.5 % of each other). A generator's output can break this — a dim halo in one
// sequence around a brain the others outline — and sample decoding restores it: a pixel that is black in any
// sequence is background, black in every channel, with no tumour label (a label outside the brain is invalid).
import { SLICE_CHANNELS } from './presets.js';

const SEQUENCES = SLICE_CHANNELS.length - 1;

/**
 * In place on NHWC slice bytes ([T1, T2, FLAIR, T1ce, annotation] per pixel): every pixel with a 0 in any of the
 * four sequences becomes 0 in all five channels. Returns how many pixels changed.
 */
export function applySharedBrainMask(bytes: Uint8Array): number {
  const channels = SLICE_CHANNELS.length;
  if (bytes.length % channels !== 0) {
    throw new Error(
      `applySharedBrainMask: ${bytes.length} bytes is not a whole number of ${channels}-channel pixels`,
    );
  }
  let changed = 0;
  for (let p = 0; p < bytes.length; p += channels) {
    let anyBlack = false;
    let anyOther = false;
    for (let c = 0; c < SEQUENCES; c++) {
      if (bytes[p + c] === 0) anyBlack = true;
      else anyOther = true;
    }
    if (anyBlack && (anyOther || bytes[p + SEQUENCES] !== 0)) {
      bytes.fill(0, p, p + channels);
      changed++;
    }
  }
  return changed;
}
