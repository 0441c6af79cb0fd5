// Loads one BraTS case: decodes the four sequences and the annotation, checks them against each other and maps
// the annotation to the canonical labels. Every refusal names the case and the file.
import path from 'node:path';
import {
  NiftiFormatError,
  readNifti,
  type NiftiHeader,
  type NiftiVolume,
  type VoxelArray,
} from '../nifti/index.js';
import { CaseError } from './case-error.js';
import type { BratsCaseFiles } from './case-discovery.js';
import { canonicalLookup, schemeFromLabelValues, UNKNOWN_LABEL, type LabelScheme } from './label-schemes.js';
import { MODALITIES, type CanonicalCounts, type Modality } from './modalities.js';

export type SchemeSource = 'option' | 'naming' | 'label values' | 'default (values 1 and 2 only)';

export interface LoadCaseOptions {
  /** force a label scheme instead of detecting it */
  labels?: LabelScheme;
  /** accept a case without an annotation (usable for generation only) */
  allowUnlabelled?: boolean;
}

export interface LoadedCase {
  id: string;
  files: BratsCaseFiles;
  dims: [number, number, number];
  spacing: [number, number, number];
  affine: number[][];
  images: Record<Modality, NiftiVolume>;
  /** the annotation file's header and value range (its voxels live on only as `labels`) */
  seg?: { file: string; header: NiftiHeader; min: number; max: number };
  /** canonical labels (0 background, 1 NCR, 2 ED, 3 ET); absent for an unlabelled case */
  labels?: Uint8Array;
  scheme?: LabelScheme;
  schemeSource?: SchemeSource;
  rawLabelCounts?: Record<string, number>;
  canonicalCounts?: CanonicalCounts;
}

const AFFINE_TOLERANCE_MM = 1e-2;

function spatialDims(caseId: string, vol: NiftiVolume): [number, number, number] {
  const dims = vol.header.dims;
  const extra = dims.slice(3);
  if (dims.length < 3 || extra.some((d) => d > 1)) {
    throw new CaseError(
      caseId,
      vol.file,
      `is ${dims.length}-D (${dims.join('x')}); a BraTS case needs one 3-D volume per file`,
    );
  }
  return [dims[0]!, dims[1]!, dims[2]!];
}

function sameGrid(a: number[][], b: number[][]): boolean {
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 4; c++) if (Math.abs(a[r]![c]! - b[r]![c]!) > AFFINE_TOLERANCE_MM) return false;
  }
  return true;
}

function isFloatData(data: VoxelArray): data is Float32Array | Float64Array {
  return data instanceof Float32Array || data instanceof Float64Array;
}

function checkFinite(caseId: string, vol: NiftiVolume): void {
  const { data } = vol;
  if (!isFloatData(data)) return;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      const kind = Number.isNaN(data[i]!) ? 'NaN' : 'infinite';
      throw new CaseError(caseId, vol.file, `voxel ${i} is ${kind}; a case must hold finite values only`);
    }
  }
}

async function readVolume(caseId: string, file: string): Promise<NiftiVolume> {
  try {
    return await readNifti(file);
  } catch (error) {
    if (error instanceof NiftiFormatError) throw new CaseError(caseId, file, error.reason);
    const message =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (error as Error).message;
    throw new CaseError(caseId, file, message);
  }
}

/** Counts each raw label value; refuses non-integer or out-of-range values. */
function countRawLabels(caseId: string, seg: NiftiVolume): Float64Array {
  const counts = new Float64Array(256);
  const { data } = seg;
  const slope = seg.header.hasScaling ? seg.header.sclSlope : 1;
  const inter = seg.header.hasScaling ? seg.header.sclInter : 0;
  for (let i = 0; i < data.length; i++) {
    const value = data[i]! * slope + inter;
    if (!(value >= 0 && value < 256) || value !== Math.round(value)) {
      const shown = Number.isInteger(value) ? String(value) : value.toPrecision(6);
      throw new CaseError(
        caseId,
        seg.file,
        `label value ${shown} at voxel ${i} is not a known integer label`,
      );
    }
    counts[value]!++;
  }
  return counts;
}

function resolveScheme(
  files: BratsCaseFiles,
  present: number[],
  forced?: LabelScheme,
): { scheme: LabelScheme; source: SchemeSource } {
  if (forced) return { scheme: forced, source: 'option' };
  if (files.naming === '2023') return { scheme: '2023', source: 'naming' };
  if (files.naming === '2020' || files.naming === '2021') return { scheme: '2017', source: 'naming' };
  const fromValues = schemeFromLabelValues(present);
  if (fromValues) return { scheme: fromValues, source: 'label values' };
  // Only 1 (NCR) and 2 (ED) present: every scheme maps them alike.
  return { scheme: '2023', source: 'default (values 1 and 2 only)' };
}

export async function loadCase(files: BratsCaseFiles, options: LoadCaseOptions = {}): Promise<LoadedCase> {
  const id = files.id;
  if (!files.seg && !options.allowUnlabelled) {
    throw new CaseError(
      id,
      path.join(files.dir, '<seg>'),
      'no annotation (seg) file; unlabelled cases are accepted for generation only when allowed (--allow-unlabelled)',
    );
  }
  // Decode in parallel: inflating runs on libuv's threadpool.
  const [images, seg] = await Promise.all([
    Promise.all(MODALITIES.map((m) => readVolume(id, files.images[m]))),
    files.seg ? readVolume(id, files.seg) : Promise.resolve(undefined),
  ]);
  const volumes = Object.fromEntries(MODALITIES.map((m, i) => [m, images[i]!])) as Record<
    Modality,
    NiftiVolume
  >;
  const reference = volumes.t1;
  const dims = spatialDims(id, reference);
  for (const vol of [...images, ...(seg ? [seg] : [])]) {
    const d = spatialDims(id, vol);
    if (d.some((v, i) => v !== dims[i])) {
      throw new CaseError(
        id,
        vol.file,
        `grid ${d.join('x')} differs from ${reference.file}'s ${dims.join('x')}`,
      );
    }
    if (!sameGrid(vol.header.affine, reference.header.affine)) {
      throw new CaseError(
        id,
        vol.file,
        `voxel-to-world affine differs from ${reference.file}'s (not the same grid)`,
      );
    }
  }
  for (const vol of images) checkFinite(id, vol);
  const pix = reference.header.pixdim;
  const loaded: LoadedCase = {
    id,
    files,
    dims,
    spacing: [Math.abs(pix[0] ?? 1), Math.abs(pix[1] ?? 1), Math.abs(pix[2] ?? 1)],
    affine: reference.header.affine,
    images: volumes,
  };
  if (!seg) return loaded;

  const rawCounts = countRawLabels(id, seg);
  const present = [...rawCounts.keys()].filter((v) => v > 0 && rawCounts[v]! > 0);
  const { scheme, source } = resolveScheme(files, present, options.labels);
  const lookup = canonicalLookup(scheme);
  const unknown = present.filter((v) => lookup[v] === UNKNOWN_LABEL);
  if (unknown.length > 0) {
    throw new CaseError(
      id,
      seg.file,
      `label value ${unknown.join(', ')} is not part of the ${scheme} label scheme (scheme from ${source})`,
    );
  }
  const labels = new Uint8Array(seg.data.length);
  const slope = seg.header.hasScaling ? seg.header.sclSlope : 1;
  const inter = seg.header.hasScaling ? seg.header.sclInter : 0;
  const raw = seg.data;
  for (let i = 0; i < raw.length; i++) labels[i] = lookup[raw[i]! * slope + inter]!;
  const canonicalCounts: CanonicalCounts = { NCR: 0, ED: 0, ET: 0 };
  for (const v of present) {
    const c = lookup[v]!;
    if (c === 1) canonicalCounts.NCR += rawCounts[v]!;
    else if (c === 2) canonicalCounts.ED += rawCounts[v]!;
    else if (c === 3) canonicalCounts.ET += rawCounts[v]!;
  }
  const rawLabelCounts: Record<string, number> = {};
  for (let v = 0; v < 256; v++) if (rawCounts[v]! > 0) rawLabelCounts[String(v)] = rawCounts[v]!;
  const values = Object.keys(rawLabelCounts).map(Number);
  const segInfo = { file: seg.file, header: seg.header, min: Math.min(...values), max: Math.max(...values) };
  return { ...loaded, seg: segInfo, labels, scheme, schemeSource: source, rawLabelCounts, canonicalCounts };
}
