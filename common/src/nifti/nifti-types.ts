// The shapes the NIfTI reader and writer exchange, and the voxel datatypes both support.

export type NiftiDatatype =
  'uint8' | 'int8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'float64';

export type VoxelArray =
  Uint8Array | Int8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array;

export interface NiftiHeader {
  version: 1 | 2;
  /** dim[1..dim[0]], e.g. [240, 240, 155]. */
  dims: number[];
  /** pixdim[1..dim[0]]. */
  pixdim: number[];
  datatype: NiftiDatatype;
  datatypeCode: number;
  /** Bits per voxel of `datatype` (like nibabel, the datatype wins over a disagreeing bitpix field). */
  bitpix: number;
  /** Byte order of the file; `NiftiVolume.data` is always in host order. */
  littleEndian: boolean;
  voxOffset: number;
  /** Effective scaling: a slope of 0 or NaN means none (slope 1, inter 0, hasScaling false). */
  sclSlope: number;
  sclInter: number;
  hasScaling: boolean;
  qformCode: number;
  sformCode: number;
  /** 4x4 voxel -> world: sform if sform_code > 0, else qform if qform_code > 0, else diag(pixdim). */
  affine: number[][];
  affineSource: 'sform' | 'qform' | 'pixdim';
  description: string;
}

export interface NiftiVolume {
  file: string;
  header: NiftiHeader;
  /**
   * Raw stored values (unscaled) in host byte order, length product(dims), x fastest. May be a view into a
   * larger buffer: use byteOffset/byteLength, never `data.buffer` as a whole.
   */
  data: VoxelArray;
}

export interface NiftiWriteSpec {
  dims: number[];
  datatype: NiftiDatatype;
  data: VoxelArray;
  /** pixdim[1..dims.length]; with an affine, the spatial ones must match its column lengths (default). */
  pixdim?: number[];
  /** 4x4 voxel -> world, written as sform and qform (scanner coordinates). */
  affine?: number[][];
  sclSlope?: number;
  sclInter?: number;
  /** Printable ASCII, at most 79 characters. */
  description?: string;
}

/** What the reader and writer need of Uint8Array, Int16Array, ...; one signature each, so calls type-check. */
interface VoxelArrayConstructor {
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
  new (length: number): VoxelArray;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): VoxelArray;
}

interface DatatypeInfo {
  code: number;
  arrayType: VoxelArrayConstructor;
}

/** NIfTI datatype codes (nifti1.h) of the supported voxel types. */
export const NIFTI_DATATYPES: Readonly<Record<NiftiDatatype, DatatypeInfo>> = {
  uint8: { code: 2, arrayType: Uint8Array },
  int16: { code: 4, arrayType: Int16Array },
  int32: { code: 8, arrayType: Int32Array },
  float32: { code: 16, arrayType: Float32Array },
  float64: { code: 64, arrayType: Float64Array },
  int8: { code: 256, arrayType: Int8Array },
  uint16: { code: 512, arrayType: Uint16Array },
  uint32: { code: 768, arrayType: Uint32Array },
};
