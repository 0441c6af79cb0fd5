// One synthetic BraTS-like case: four int16 sequences and a tumour segmentation, deterministic for a seed.

import { createRng, type SeedInput } from '../util/rng.js';
import { buildAnatomy, Tissue } from './anatomy.js';
import { createRenderScratch, renderSequence, SEQUENCES } from './contrast.js';
import type { Dims3 } from './fields.js';

export type BratsNaming = '2020' | '2021' | '2023';
export const BRATS_NAMINGS: readonly BratsNaming[] = ['2020', '2021', '2023'];
export const DEFAULT_PHANTOM_DIMS: Dims3 = [240, 240, 155];

export interface PhantomCaseVolumes {
  id: string;
  dims: [number, number, number];
  t1: Int16Array;
  t1ce: Int16Array;
  t2: Int16Array;
  flair: Int16Array;
  /** Tumour labels in the naming's scheme: 2023 -> 1 NCR, 2 ED, 3 ET; 2020/2021 -> 1 NCR/NET, 2 ED, 4 ET. */
  seg: Uint8Array;
}

/** A case plus the ground-truth tissue map (values of `Tissue`), for tests and inspection. */
export interface PhantomCaseWithTissue extends PhantomCaseVolumes {
  tissue: Uint8Array;
}

export interface PhantomCaseOptions {
  seed: SeedInput;
  id: string;
  naming: BratsNaming;
  /** Grid size in 1 mm voxels; default 240 x 240 x 155 like BraTS. */
  dims?: [number, number, number];
}

/** Label values of the tumour classes in a naming's scheme. */
export function tumourLabels(naming: BratsNaming): { necrosis: number; edema: number; enhancing: number } {
  return { necrosis: 1, edema: 2, enhancing: naming === '2023' ? 3 : 4 };
}

export function validatePhantomDims(dims: readonly number[]): Dims3 {
  if (dims.length !== 3 || dims.some((n) => !Number.isInteger(n) || n < 16 || n > 1024)) {
    throw new RangeError(`phantom dims must be three integers in [16, 1024], got [${dims.join(', ')}]`);
  }
  return [dims[0], dims[1], dims[2]];
}

export function validateNaming(naming: string): BratsNaming {
  if (!(BRATS_NAMINGS as readonly string[]).includes(naming)) {
    throw new RangeError(`BraTS naming must be one of ${BRATS_NAMINGS.join(', ')}, got '${naming}'`);
  }
  return naming as BratsNaming;
}

export function generatePhantomCaseWithTissue(options: PhantomCaseOptions): PhantomCaseWithTissue {
  const dims = validatePhantomDims(options.dims ?? DEFAULT_PHANTOM_DIMS);
  const naming = validateNaming(options.naming);
  // Streams are forked by name, so each part's randomness is independent of the others' consumption.
  const rng = createRng(options.seed);
  const anatomy = buildAnatomy(rng.fork('anatomy'), dims);

  const voxels = dims[0] * dims[1] * dims[2];
  const scratch = createRenderScratch(anatomy);
  const images = {} as Record<(typeof SEQUENCES)[number], Int16Array>;
  for (const sequence of SEQUENCES) {
    images[sequence] = new Int16Array(voxels);
    renderSequence(rng.fork(`sequence:${sequence}`), sequence, anatomy, dims, images[sequence], scratch);
  }

  const labels = tumourLabels(naming);
  const labelOf = new Uint8Array(256);
  labelOf[Tissue.Necrosis] = labels.necrosis;
  labelOf[Tissue.Edema] = labels.edema;
  labelOf[Tissue.Enhancing] = labels.enhancing;
  const tissue = new Uint8Array(voxels);
  const seg = new Uint8Array(voxels);
  const [nx, ny, nz] = anatomy.crop.dims;
  const [ox, oy, oz] = anatomy.crop.origin;
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      const cropRow = nx * (y + ny * z);
      const fullRow = ox + dims[0] * (oy + y + dims[1] * (oz + z));
      tissue.set(anatomy.tissue.subarray(cropRow, cropRow + nx), fullRow);
      for (let x = 0; x < nx; x++) seg[fullRow + x] = labelOf[anatomy.tissue[cropRow + x]];
    }
  }
  return { id: options.id, dims, ...images, seg, tissue };
}

/** Generates one phantom case (about a second or two at 240 x 240 x 155 on a slow core). */
export function generatePhantomCase(options: PhantomCaseOptions): PhantomCaseVolumes {
  const { tissue: _tissue, ...volumes } = generatePhantomCaseWithTissue(options);
  return volumes;
}
