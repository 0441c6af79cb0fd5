// Reads single-file NIfTI-1 and NIfTI-2 images (.nii, .nii.gz) into host-order typed arrays.
// nifti-reader-js parses the header fields; node:zlib inflates (native and off the event loop, unlike the
// library's JS inflate); the affine, scaling and voxel layout follow nifti1_io.c and nibabel.
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { promisify } from 'node:util';
import { createGunzip, gunzip } from 'node:zlib';
import * as nifti from 'nifti-reader-js';
import { qformToAffine } from './nifti-affine.js';
import { NiftiFormatError } from './nifti-error.js';
import {
  NIFTI_DATATYPES,
  type NiftiDatatype,
  type NiftiHeader,
  type NiftiVolume,
  type VoxelArray,
} from './nifti-types.js';

const gunzipAsync = promisify(gunzip);

const NIFTI1_HEADER_SIZE = 348;
const NIFTI2_HEADER_SIZE = 540;
/** Enough leading bytes for either header version. */
const LONGEST_HEADER = NIFTI2_HEADER_SIZE;
const HOST_LITTLE_ENDIAN = endianness() === 'LE';

/** Codes nifti1.h defines that this reader refuses, named so the error says what the file holds. */
const UNSUPPORTED_DATATYPES: Readonly<Record<number, string>> = {
  1: 'binary (1 bit)',
  32: 'complex64',
  128: 'RGB24',
  1024: 'int64',
  1280: 'uint64',
  1536: 'float128',
  1792: 'complex128',
  2048: 'complex256',
  2304: 'RGBA32',
};

export async function readNifti(file: string): Promise<NiftiVolume> {
  return decodeBytes(await readFile(file), file, true);
}

/** Decodes a whole .nii or .nii.gz held in memory; the result never shares memory with `bytes`. */
export async function decodeNifti(bytes: Uint8Array, file: string): Promise<NiftiVolume> {
  return decodeBytes(bytes, file, false);
}

/** Reads only the leading bytes of the file (inflating only those when gzipped); voxel data is not checked. */
export async function readNiftiHeader(file: string): Promise<NiftiHeader> {
  return parseHeader(await readLeadingBytes(file, LONGEST_HEADER), file);
}

/** Stored values with scl_slope/scl_inter applied, as a new float32 array. */
export function scaledValues(vol: NiftiVolume): Float32Array {
  const { data, header } = vol;
  if (!header.hasScaling) return new Float32Array(data);
  const { sclSlope, sclInter } = header;
  const scaled = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) scaled[i] = data[i] * sclSlope + sclInter;
  return scaled;
}

/** Range of the scaled values (computed in float64, NaN ignored); NaN for both when no value is a number. */
export function volumeRange(vol: NiftiVolume): { min: number; max: number } {
  const { data, header } = vol;
  let low = Infinity;
  let high = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    // NaN fails both comparisons, so it never becomes an extreme
    if (value < low) low = value;
    if (value > high) high = value;
  }
  if (!(low <= high)) return { min: NaN, max: NaN };
  // scaling (and its float64 rounding) is monotonic, so only the stored extremes need scaling
  const [scaledLow, scaledHigh] = [low, high].map((value) => value * header.sclSlope + header.sclInter);
  return header.sclSlope > 0 ? { min: scaledLow, max: scaledHigh } : { min: scaledHigh, max: scaledLow };
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** `owned`: the caller hands over `bytes`, so the voxel array may be a view into them instead of a copy. */
async function decodeBytes(bytes: Uint8Array, file: string, owned: boolean): Promise<NiftiVolume> {
  let contents = bytes;
  let ownsContents = owned;
  if (isGzip(bytes)) {
    try {
      contents = await gunzipAsync(bytes);
    } catch (error) {
      throw new NiftiFormatError(file, `unreadable gzip data (${(error as Error).message})`);
    }
    ownsContents = true;
  }
  const header = parseHeader(contents, file);
  const voxelCount = header.dims.reduce((product, size) => product * size, 1);
  const expectedBytes = (voxelCount * header.bitpix) / 8;
  const foundBytes = Math.max(0, contents.length - header.voxOffset);
  if (foundBytes < expectedBytes) {
    throw new NiftiFormatError(
      file,
      `truncated: expected ${expectedBytes} bytes of voxel data, found ${foundBytes}`,
    );
  }
  return { file, header, data: voxelArray(contents, header, voxelCount, ownsContents) };
}

/** The voxels in host order: a view when possible, else an aligned copy, byte-swapped only when needed. */
function voxelArray(
  contents: Uint8Array,
  header: NiftiHeader,
  voxelCount: number,
  owned: boolean,
): VoxelArray {
  const ArrayType = NIFTI_DATATYPES[header.datatype].arrayType;
  const elementSize = ArrayType.BYTES_PER_ELEMENT;
  const start = contents.byteOffset + header.voxOffset;
  const byteLength = voxelCount * elementSize;
  const hostOrder = elementSize === 1 || header.littleEndian === HOST_LITTLE_ENDIAN;
  if (hostOrder && owned && start % elementSize === 0) {
    return new ArrayType(contents.buffer, start, voxelCount);
  }
  // ArrayBuffer.slice copies into a fresh buffer, which is aligned for every element size
  const copy = contents.buffer.slice(start, start + byteLength);
  if (!hostOrder) {
    const bytes = Buffer.from(copy);
    if (elementSize === 2) bytes.swap16();
    else if (elementSize === 4) bytes.swap32();
    else bytes.swap64();
  }
  return new ArrayType(copy);
}

async function readLeadingBytes(file: string, count: number): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  let leading: Uint8Array;
  try {
    const buffer = Buffer.alloc(count);
    const { bytesRead } = await handle.read(buffer, 0, count, 0);
    leading = buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  return isGzip(leading) ? inflateLeadingBytes(file, count) : leading;
}

/** Inflates just the first `count` bytes of a gzip file, then stops reading it. */
async function inflateLeadingBytes(file: string, count: number): Promise<Uint8Array> {
  const source = createReadStream(file);
  const inflater = createGunzip();
  source.on('error', (error) => inflater.destroy(error));
  const chunks: Buffer[] = [];
  let inflated = 0;
  try {
    for await (const chunk of source.pipe(inflater) as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      inflated += chunk.length;
      if (inflated >= count) break;
    }
  } catch (error) {
    // only reached when the damage comes before the header's end: the loop stops reading once it has it
    throw new NiftiFormatError(file, `unreadable gzip data (${(error as Error).message})`);
  } finally {
    source.destroy();
    inflater.destroy();
  }
  return Buffer.concat(chunks).subarray(0, count);
}

function parseHeader(bytes: Uint8Array, file: string): NiftiHeader {
  if (bytes.length < NIFTI1_HEADER_SIZE) {
    throw new NiftiFormatError(
      file,
      `not a NIfTI file: ${bytes.length} bytes, shorter than a NIfTI-1 header (${NIFTI1_HEADER_SIZE})`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const version = headerVersion(view, file);
  checkMagic(bytes, version, file);
  const headerSize = version === 1 ? NIFTI1_HEADER_SIZE : NIFTI2_HEADER_SIZE;
  if (bytes.length < headerSize) {
    throw new NiftiFormatError(file, `truncated NIfTI-2 header: ${bytes.length} of ${headerSize} bytes`);
  }
  // a copy of exactly the fixed header, so that the library does not parse extensions (this reader skips
  // them); copied with the Uint8Array constructor because Buffer.slice would be a view of a larger buffer
  const fields = version === 1 ? new nifti.NIFTI1() : new nifti.NIFTI2();
  fields.readHeader(new Uint8Array(bytes.subarray(0, headerSize)).buffer);

  const rank = fields.dims[0];
  if (!Number.isInteger(rank) || rank < 1 || rank > 7) {
    throw new NiftiFormatError(file, `invalid dim[0] = ${rank} (the number of dimensions must be 1 to 7)`);
  }
  const dims = fields.dims.slice(1, rank + 1);
  dims.forEach((size, i) => {
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new NiftiFormatError(file, `invalid dim[${i + 1}] = ${size} (sizes must be positive integers)`);
    }
  });
  const datatype = datatypeOf(fields.datatypeCode, file);
  const pixdim = fields.pixDims.slice(1, rank + 1);
  const { affine, affineSource } = chooseAffine(fields, view, version);

  // a slope of 0 or NaN means "no scaling"; a non-finite intercept counts as 0 (nifti1_io's FIXED_FLOAT)
  const slopeIsSet = Number.isFinite(fields.scl_slope) && fields.scl_slope !== 0;
  const sclSlope = slopeIsSet ? fields.scl_slope : 1;
  const sclInter = slopeIsSet && Number.isFinite(fields.scl_inter) ? fields.scl_inter : 0;

  return {
    version,
    dims,
    pixdim,
    datatype,
    datatypeCode: fields.datatypeCode,
    bitpix: NIFTI_DATATYPES[datatype].arrayType.BYTES_PER_ELEMENT * 8,
    littleEndian: fields.littleEndian,
    // below the minimum for a single file means "right after the header", as nifti1_io and nibabel read it
    voxOffset: Math.max(Math.trunc(fields.vox_offset), headerSize + 4),
    sclSlope,
    sclInter,
    hasScaling: sclSlope !== 1 || sclInter !== 0,
    qformCode: fields.qform_code,
    sformCode: fields.sform_code,
    affine,
    affineSource,
    description: nulTerminatedText(bytes, version === 1 ? 148 : 240, 80),
  };
}

/** Text up to the first NUL (the library's reader skips NULs and would append what follows them). */
function nulTerminatedText(bytes: Uint8Array, start: number, maxLength: number): string {
  const field = bytes.subarray(start, start + maxLength);
  const end = field.indexOf(0);
  return Buffer.from(field.subarray(0, end < 0 ? maxLength : end)).toString('latin1');
}

/** From sizeof_hdr, which is 348 or 540 in the file's byte order. */
function headerVersion(view: DataView, file: string): 1 | 2 {
  for (const littleEndian of [true, false]) {
    const size = view.getInt32(0, littleEndian);
    if (size === NIFTI1_HEADER_SIZE) return 1;
    if (size === NIFTI2_HEADER_SIZE) return 2;
  }
  throw new NiftiFormatError(
    file,
    `not a NIfTI file: the first 4 bytes (sizeof_hdr) are neither ${NIFTI1_HEADER_SIZE} (NIfTI-1) ` +
      `nor ${NIFTI2_HEADER_SIZE} (NIfTI-2) in either byte order`,
  );
}

function checkMagic(bytes: Uint8Array, version: 1 | 2, file: string): void {
  const at = version === 1 ? 344 : 4;
  const magic = String.fromCharCode(...bytes.subarray(at, at + 4));
  const single = version === 1 ? 'n+1\0' : 'n+2\0';
  const pair = version === 1 ? 'ni1\0' : 'ni2\0';
  if (magic === single) return;
  if (magic === pair) {
    throw new NiftiFormatError(
      file,
      `NIfTI-${version} header of a .hdr/.img pair (magic "ni${version}"): the voxels are in a separate .img ` +
        'file, and .hdr/.img pairs are not supported; convert the pair to a single .nii or .nii.gz',
    );
  }
  if (version === 1) {
    throw new NiftiFormatError(
      file,
      'Analyze 7.5 header (sizeof_hdr 348 but no NIfTI magic "n+1" or "ni1"): this is Analyze 7.5, not ' +
        'NIfTI, and is not supported; convert it to NIfTI (its orientation is ambiguous)',
    );
  }
  throw new NiftiFormatError(file, `not a NIfTI file: sizeof_hdr is 540 but the NIfTI-2 magic is missing`);
}

function datatypeOf(code: number, file: string): NiftiDatatype {
  const supported = Object.entries(NIFTI_DATATYPES).find(([, info]) => info.code === code);
  if (supported) return supported[0] as NiftiDatatype;
  const name = UNSUPPORTED_DATATYPES[code] ?? 'unknown';
  throw new NiftiFormatError(
    file,
    `unsupported datatype code ${code} (${name}); supported: ${Object.keys(NIFTI_DATATYPES).join(', ')}`,
  );
}

/** sform when sform_code > 0, else the quaternion qform when qform_code > 0, else voxel sizes only. */
function chooseAffine(
  fields: nifti.NIFTI1 | nifti.NIFTI2,
  view: DataView,
  version: 1 | 2,
): Pick<NiftiHeader, 'affine' | 'affineSource'> {
  if (fields.sform_code > 0) {
    // read srow_x/y/z here: for NIfTI-1 the library keeps them only when it prefers the sform itself
    const [start, size] = version === 1 ? [280, 4] : [400, 8];
    const rows = [0, 1, 2].map((row) =>
      [0, 1, 2, 3].map((col) => {
        const at = start + (row * 4 + col) * size;
        return size === 4
          ? view.getFloat32(at, fields.littleEndian)
          : view.getFloat64(at, fields.littleEndian);
      }),
    );
    return { affine: [...rows, [0, 0, 0, 1]], affineSource: 'sform' };
  }
  const spacing = [1, 2, 3].map((i) => fields.pixDims[i]) as [number, number, number];
  if (fields.qform_code > 0) {
    const affine = qformToAffine({
      quaternB: fields.quatern_b,
      quaternC: fields.quatern_c,
      quaternD: fields.quatern_d,
      qoffset: [fields.qoffset_x, fields.qoffset_y, fields.qoffset_z],
      spacing,
      qfac: fields.pixDims[0],
    });
    return { affine, affineSource: 'qform' };
  }
  const diagonal = spacing.map((size) => (size > 0 ? size : 1));
  return {
    affine: [0, 1, 2, 3].map((row) =>
      [0, 1, 2, 3].map((col) => (row !== col ? 0 : row < 3 ? diagonal[row] : 1)),
    ),
    affineSource: 'pixdim',
  };
}
