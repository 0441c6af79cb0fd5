// Writes single-file NIfTI-1 images: little-endian, voxels right after the header (vox_offset 352).
import { randomUUID } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { endianness } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { affineToQform, type Qform } from './nifti-affine.js';
import { NIFTI_DATATYPES, type NiftiWriteSpec } from './nifti-types.js';

const gzipAsync = promisify(gzip);

const HEADER_SIZE = 348;
/** Header plus the 4-byte extension flag (no extensions). */
const VOX_OFFSET = 352;
const XFORM_SCANNER_ANAT = 1;
const UNITS_MM = 2;
const HOST_LITTLE_ENDIAN = endianness() === 'LE';

/** Everything but the voxels: for callers that stream the voxel data after the header themselves. */
export type NiftiHeaderSpec = Omit<NiftiWriteSpec, 'data'>;

/** The 352 bytes that precede the voxels (little-endian) in a single-file NIfTI-1 with no extensions. */
export function encodeNiftiHeader(spec: NiftiHeaderSpec): Buffer {
  const { dims, datatype } = spec;
  if (dims.length < 1 || dims.length > 7) {
    throw new RangeError(`NIfTI-1 holds 1 to 7 dimensions, got ${dims.length}`);
  }
  for (const size of dims) {
    if (!Number.isInteger(size) || size < 1 || size > 32767) {
      throw new RangeError(
        `NIfTI-1 dimension sizes are integers from 1 to 32767, got ${JSON.stringify(dims)}`,
      );
    }
  }
  const { code, arrayType } = NIFTI_DATATYPES[datatype];
  const description = spec.description ?? '';
  if (!/^[\x20-\x7e]{0,79}$/.test(description)) {
    throw new RangeError(
      `description must be at most 79 printable ASCII characters: ${JSON.stringify(description)}`,
    );
  }

  const header = Buffer.alloc(VOX_OFFSET);
  header.writeInt32LE(HEADER_SIZE, 0);
  header.write('r', 38, 'latin1'); // "regular", as Analyze readers expect
  header.writeInt16LE(dims.length, 40);
  for (let i = 0; i < 7; i++) header.writeInt16LE(dims[i] ?? 1, 42 + i * 2);
  header.writeInt16LE(code, 70);
  header.writeInt16LE(arrayType.BYTES_PER_ELEMENT * 8, 72);

  const qform = spec.affine ? affineToQform(checkedAffine(spec.affine)) : undefined;
  const pixdim = pixdimWithQfac(spec, qform);
  pixdim.forEach((value, i) => header.writeFloatLE(value, 76 + i * 4));
  header.writeFloatLE(VOX_OFFSET, 108);
  // slope 0 tells readers there is no scaling
  header.writeFloatLE(spec.sclSlope ?? (spec.sclInter === undefined ? 0 : 1), 112);
  header.writeFloatLE(spec.sclInter ?? 0, 116);
  header.writeUInt8(UNITS_MM, 123);
  header.write(description, 148, 80, 'latin1');

  if (spec.affine && qform) {
    header.writeInt16LE(XFORM_SCANNER_ANAT, 252);
    header.writeInt16LE(XFORM_SCANNER_ANAT, 254);
    [qform.quaternB, qform.quaternC, qform.quaternD, ...qform.qoffset].forEach((value, i) =>
      header.writeFloatLE(value, 256 + i * 4),
    );
    for (let row = 0; row < 3; row++) {
      for (let col = 0; col < 4; col++) header.writeFloatLE(spec.affine[row][col], 280 + (row * 4 + col) * 4);
    }
  }
  header.write('n+1\0', 344, 'latin1');
  return header;
}

/** A whole single-file NIfTI-1 image in memory. */
export function encodeNifti(spec: NiftiWriteSpec): Buffer {
  const { data, datatype, dims } = spec;
  const { arrayType } = NIFTI_DATATYPES[datatype];
  if (!(data instanceof arrayType)) {
    throw new TypeError(`datatype ${datatype} needs a ${arrayType.name}, got a ${data.constructor.name}`);
  }
  const header = encodeNiftiHeader(spec);
  const voxelCount = dims.reduce((product, size) => product * size, 1);
  if (data.length !== voxelCount) {
    throw new RangeError(`dims ${JSON.stringify(dims)} hold ${voxelCount} voxels, data has ${data.length}`);
  }
  const file = Buffer.alloc(VOX_OFFSET + data.byteLength);
  header.copy(file, 0);
  const voxels = file.subarray(VOX_OFFSET);
  voxels.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  if (!HOST_LITTLE_ENDIAN) {
    if (arrayType.BYTES_PER_ELEMENT === 2) voxels.swap16();
    else if (arrayType.BYTES_PER_ELEMENT === 4) voxels.swap32();
    else if (arrayType.BYTES_PER_ELEMENT === 8) voxels.swap64();
  }
  return file;
}

/**
 * Writes `file` (gzipped when the name ends in .gz) through a temporary file in the same folder that is
 * flushed and then renamed, so readers and crashes never see a partial file.
 */
export async function writeNifti(
  file: string,
  spec: NiftiWriteSpec,
  options: { gzipLevel?: number } = {},
): Promise<void> {
  const encoded = encodeNifti(spec);
  const contents = file.endsWith('.gz')
    ? await gzipAsync(encoded, { level: options.gzipLevel ?? 6 })
    : encoded;
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.partial`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(contents);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * pixdim[0..7]. With an affine, pixdim[0] is the qform's qfac and pixdim[1..3] its voxel sizes; a pixdim
 * given too must agree with them, or the qform and sform would describe different grids.
 */
function pixdimWithQfac(spec: NiftiHeaderSpec, qform: Qform | undefined): number[] {
  const given = spec.pixdim ?? [];
  if (given.length > spec.dims.length) {
    throw new RangeError(`pixdim has ${given.length} entries for ${spec.dims.length} dimensions`);
  }
  const pixdim = [1, ...Array.from({ length: 7 }, (_, i) => given[i] ?? 1)];
  if (!qform) return pixdim;
  qform.spacing.forEach((size, i) => {
    if (given[i] !== undefined && Math.abs(given[i] - size) > 1e-5 * size) {
      throw new RangeError(`pixdim[${i + 1}] = ${given[i]} disagrees with the affine's voxel size ${size}`);
    }
    pixdim[i + 1] = size;
  });
  pixdim[0] = qform.qfac;
  return pixdim;
}

function checkedAffine(affine: number[][]): number[][] {
  const wellFormed =
    affine.length === 4 &&
    affine.every((row) => row.length === 4 && row.every(Number.isFinite)) &&
    [0, 0, 0, 1].every((value, col) => affine[3][col] === value);
  if (!wellFormed) {
    throw new RangeError(`affine must be 4x4, finite, with last row [0, 0, 0, 1]: ${JSON.stringify(affine)}`);
  }
  return affine;
}
