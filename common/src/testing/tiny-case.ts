// Small hand-made BraTS cases on disk for tests: every voxel is known, so expected outputs can be computed by hand.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeNifti, type NiftiDatatype, type VoxelArray } from '../nifti/index.js';

export interface TinyCaseSpec {
  dir: string;
  /** case id; files are named `<id>_<modality>.nii.gz` (2017-2022 style) unless `naming` is '2023' */
  id: string;
  dims: [number, number, number];
  naming?: '2021' | '2023';
  /** voxel values per modality (default: a function of the position) */
  images?: Partial<Record<'t1' | 't1ce' | 't2' | 'flair', VoxelArray>>;
  imageDatatype?: NiftiDatatype;
  /** raw label values; omit `seg` entirely with `seg: null` */
  seg?: VoxelArray | null;
  segDatatype?: NiftiDatatype;
  /** per-file overrides of the grid, to build broken cases */
  dimsOverride?: Partial<Record<'t1' | 't1ce' | 't2' | 'flair' | 'seg', number[]>>;
}

const SUFFIX_2023 = { t1: 't1n', t1ce: 't1c', t2: 't2w', flair: 't2f', seg: 'seg' } as const;

export function tinyCaseFile(
  spec: Pick<TinyCaseSpec, 'dir' | 'id' | 'naming'>,
  role: keyof typeof SUFFIX_2023,
): string {
  const name =
    spec.naming === '2023' ? `${spec.id}-${SUFFIX_2023[role]}.nii.gz` : `${spec.id}_${role}.nii.gz`;
  return path.join(spec.dir, spec.id, name);
}

/** Default image: a smooth positive ramp, distinct per modality. */
export function rampVolume(dims: [number, number, number], modalityIndex: number): Int16Array {
  const [w, h, d] = dims;
  const out = new Int16Array(w * h * d);
  for (let z = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) out[(z * h + y) * w + x] = 100 + x + 2 * y + 3 * z + 50 * modalityIndex;
    }
  }
  return out;
}

export async function writeTinyCase(spec: TinyCaseSpec): Promise<string> {
  const caseDir = path.join(spec.dir, spec.id);
  await mkdir(caseDir, { recursive: true });
  const roles = ['t1', 't1ce', 't2', 'flair'] as const;
  const affine = [
    [-1, 0, 0, 0],
    [0, -1, 0, 239],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
  ];
  await Promise.all(
    roles.map((role, i) =>
      writeNifti(tinyCaseFile(spec, role), {
        dims: spec.dimsOverride?.[role] ?? spec.dims,
        datatype: spec.imageDatatype ?? 'int16',
        data: spec.images?.[role] ?? rampVolume(spec.dims, i),
        pixdim: [1, 1, 1],
        affine,
      }),
    ),
  );
  if (spec.seg !== null) {
    const seg = spec.seg ?? new Uint8Array(spec.dims[0] * spec.dims[1] * spec.dims[2]);
    await writeNifti(tinyCaseFile(spec, 'seg'), {
      dims: spec.dimsOverride?.seg ?? spec.dims,
      datatype: spec.segDatatype ?? 'uint8',
      data: seg,
      pixdim: [1, 1, 1],
      affine,
    });
  }
  return caseDir;
}
