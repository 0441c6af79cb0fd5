// MRI contrast for the phantom: per-tissue mean intensities for each sequence, then partial-volume blur,
// a smooth multiplicative bias field and Rician noise, rendered from the anatomy's crop into a full int16 volume.

import type { Rng } from '../util/rng.js';
import { Tissue, TISSUE_CLASS_COUNT, type Anatomy } from './anatomy.js';
import { binomialBlur3, type Dims3 } from './fields.js';

export type Sequence = 't1' | 't1ce' | 't2' | 'flair';
export const SEQUENCES: readonly Sequence[] = ['t1', 't1ce', 't2', 'flair'];

interface SequenceContrast {
  /** White-matter intensity, the sequence's overall scale (int16 units, near real BraTS values). */
  whiteMatter: number;
  /** Mean intensity of each tissue class relative to white matter, indexed by Tissue. */
  relative: Record<keyof typeof Tissue, number>;
}

// The textbook contrasts: T1 WM > GM > CSF with dark necrosis and slightly dark oedema; T1ce the same plus a
// very bright enhancing rim; T2 bright fluid (CSF, necrosis, oedema) over dark WM; FLAIR like T2 but with
// CSF suppressed, so oedema is the brightest tissue and GM sits above WM.
const CONTRASTS: Record<Sequence, SequenceContrast> = {
  t1: {
    whiteMatter: 800,
    relative: {
      Background: 0,
      Csf: 0.35,
      GreyMatter: 0.72,
      WhiteMatter: 1,
      DeepGrey: 0.85,
      Necrosis: 0.42,
      Edema: 0.75,
      Enhancing: 0.8,
    },
  },
  t1ce: {
    whiteMatter: 900,
    relative: {
      Background: 0,
      Csf: 0.35,
      GreyMatter: 0.74,
      WhiteMatter: 1,
      DeepGrey: 0.86,
      Necrosis: 0.45,
      Edema: 0.78,
      Enhancing: 1.75,
    },
  },
  t2: {
    whiteMatter: 450,
    relative: {
      Background: 0,
      Csf: 3.6,
      GreyMatter: 1.35,
      WhiteMatter: 1,
      DeepGrey: 1.15,
      Necrosis: 3,
      Edema: 2.3,
      Enhancing: 1.9,
    },
  },
  flair: {
    whiteMatter: 800,
    relative: {
      Background: 0,
      Csf: 0.28,
      GreyMatter: 1.3,
      WhiteMatter: 1,
      DeepGrey: 1.15,
      Necrosis: 1.3,
      Edema: 2.1,
      Enhancing: 1.6,
    },
  },
};

/** Within-tissue heterogeneity (fraction of the mean per unit of the texture field): tumours are patchy. */
const TEXTURE_AMPLITUDE: Record<keyof typeof Tissue, number> = {
  Background: 0,
  Csf: 0.03,
  GreyMatter: 0.04,
  WhiteMatter: 0.03,
  DeepGrey: 0.04,
  Necrosis: 0.12,
  Edema: 0.08,
  Enhancing: 0.15,
};

function tissueTable(values: Record<keyof typeof Tissue, number>): Float32Array {
  const table = new Float32Array(TISSUE_CLASS_COUNT);
  for (const [name, index] of Object.entries(Tissue)) table[index] = values[name as keyof typeof Tissue];
  return table;
}

const TEXTURE_TABLE = tissueTable(TEXTURE_AMPLITUDE);

/** Crop-sized buffers the four sequences share: the intensity, and the blurred brain mask. */
export interface RenderScratch {
  intensity: Float32Array;
  /** 1 / blur(brain mask) inside the brain: normalises the blur so it never mixes in the background. */
  inverseMaskWeight: Float32Array;
}

export function createRenderScratch(anatomy: Anatomy): RenderScratch {
  const { tissue, crop } = anatomy;
  const inverseMaskWeight = new Float32Array(tissue.length);
  for (let i = 0; i < tissue.length; i++) inverseMaskWeight[i] = tissue[i] === Tissue.Background ? 0 : 1;
  binomialBlur3(inverseMaskWeight, crop.dims);
  for (let i = 0; i < tissue.length; i++) {
    inverseMaskWeight[i] = tissue[i] === Tissue.Background ? 0 : 1 / inverseMaskWeight[i];
  }
  return { intensity: new Float32Array(tissue.length), inverseMaskWeight };
}

/**
 * Renders one sequence into `out` (full grid, zeroed by the caller): tissue means with a per-case jitter, texture,
 * blur, bias, Rician noise; background stays 0 and every brain voxel is at least 1.
 */
export function renderSequence(
  rng: Rng,
  sequence: Sequence,
  anatomy: Anatomy,
  fullDims: Dims3,
  out: Int16Array,
  scratch: RenderScratch,
): void {
  const contrast = CONTRASTS[sequence];
  const scale = contrast.whiteMatter * rng.uniform(0.85, 1.15);
  const means = tissueTable(contrast.relative);
  for (let t = 0; t < TISSUE_CLASS_COUNT; t++) {
    if (t !== Tissue.WhiteMatter) means[t] *= rng.uniform(0.94, 1.06);
    means[t] *= scale;
  }

  const { tissue, texture, crop } = anatomy;
  const intensity = scratch.intensity;
  for (let i = 0; i < tissue.length; i++) {
    const t = tissue[i];
    intensity[i] = means[t] * (1 + TEXTURE_TABLE[t] * texture[i]);
  }
  // Partial volume between tissues. Skull stripping zeroed the outside after imaging, so brain-edge voxels
  // average over brain only (normalised convolution) rather than darkening towards the background.
  binomialBlur3(intensity, crop.dims);
  const inverseMaskWeight = scratch.inverseMaskWeight;

  // Bias: a quadratic polynomial in coordinates normalised by the brain's semi-axes (|u| about 1 at the surface),
  // coefficients scaled so the field stays within about 1 +/- amplitude.
  const biasAmplitude = rng.uniform(0.1, 0.2);
  const coefficients = Array.from({ length: 9 }, () => rng.normal());
  const coefficientSum = coefficients.reduce((sum, value) => sum + Math.abs(value), 0);
  const [bx, by, bz, bxx, byy, bzz, bxy, bxz, byz] = coefficients.map(
    (value) => (value * biasAmplitude) / (coefficientSum * 1.25),
  );
  const noiseSd = scale * rng.uniform(0.02, 0.04);

  const [nx, ny, nz] = crop.dims;
  const [ox, oy, oz] = crop.origin;
  const [fullX, fullY] = fullDims;
  const [cx, cy, cz] = anatomy.centre;
  const [ax, ay, az] = anatomy.semiAxes;
  for (let z = 0; z < nz; z++) {
    const w = (z - cz) / az;
    for (let y = 0; y < ny; y++) {
      const v = (y - cy) / ay;
      const rowBias = 1 + by * v + bz * w + byy * v * v + bzz * w * w + byz * v * w;
      const rowSlope = bx + bxy * v + bxz * w;
      const cropRow = nx * (y + ny * z);
      const fullRow = ox + fullX * (oy + y + fullY * (oz + z));
      for (let x = 0; x < nx; x++) {
        const i = cropRow + x;
        if (tissue[i] === Tissue.Background) continue;
        const u = (x - cx) / ax;
        const signal = intensity[i] * inverseMaskWeight[i] * (rowBias + u * (rowSlope + bxx * u));
        // Rician: the magnitude of a complex signal with Gaussian noise on both channels.
        const real = signal + noiseSd * rng.normal();
        const imaginary = noiseSd * rng.normal();
        const magnitude = Math.round(Math.sqrt(real * real + imaginary * imaginary));
        out[fullRow + x] = magnitude < 1 ? 1 : magnitude > 32767 ? 32767 : magnitude;
      }
    }
  }
}
