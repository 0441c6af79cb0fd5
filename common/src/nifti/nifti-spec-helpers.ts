// Shared by the NIfTI specs: the nibabel oracle (test/oracles/nibabel_oracle.py) and comparisons against it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../testing/paths.js';
import { scaledValues, volumeRange } from './nifti-reader.js';
import type { NiftiVolume, VoxelArray } from './nifti-types.js';

const execFileAsync = promisify(execFile);

/** What nibabel_oracle.py's `describe` reports for one file (see the script for the exact meanings). */
export interface NibabelDescription {
  file: string;
  version: 1 | 2;
  dims: number[];
  datatype: string;
  littleEndian: boolean;
  voxOffset: number;
  sclSlope: number;
  sclInter: number;
  pixdim: number[];
  qformCode: number;
  sformCode: number;
  affine: number[][];
  affineSource: 'sform' | 'qform' | 'fallback';
  qformAffine: number[][] | null;
  description: string;
  voxelCount: number;
  nanCount: number;
  min: number | null;
  max: number | null;
  sum: number;
  absSum: number;
  sha256: string;
}

/** Runs the oracle with Debian's python (the one with nibabel) and parses its JSON output. */
export async function runNibabelOracle<T>(args: string[]): Promise<T> {
  const script = path.join(repoRoot(), 'test', 'oracles', 'nibabel_oracle.py');
  const { stdout } = await execFileAsync('/usr/bin/python3', [script, ...args], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(stdout) as T;
}

/** sha256 of the values as little-endian bytes, whatever the host's byte order. */
export function littleEndianSha256(data: VoxelArray): string {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (endianness() === 'BE' && data.BYTES_PER_ELEMENT > 1) {
    const swapped = Buffer.from(bytes);
    if (data.BYTES_PER_ELEMENT === 2) swapped.swap16();
    else if (data.BYTES_PER_ELEMENT === 4) swapped.swap32();
    else swapped.swap64();
    return createHash('sha256').update(swapped).digest('hex');
  }
  return createHash('sha256').update(bytes).digest('hex');
}

export function assertClose(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual} differs from ${expected} by more than ${tolerance}`,
  );
}

export function assertAffineClose(
  actual: number[][],
  expected: number[][],
  what: string,
  tolerance = 1e-4,
): void {
  assert.equal(actual.length, 4, `${what}: 4 rows`);
  actual.forEach((row, i) =>
    row.forEach((value, j) => assertClose(value, expected[i][j], tolerance, `${what}[${i}][${j}]`)),
  );
}

/** Statistics of the scaled values the way the oracle computes them: NaN ignored, summed in float64. */
export function scaledStatistics(values: ArrayLike<number>): {
  nanCount: number;
  min: number | null;
  max: number | null;
  sum: number;
} {
  let nanCount = 0;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (Number.isNaN(value)) {
      nanCount++;
      continue;
    }
    min = Math.min(min, value);
    max = Math.max(max, value);
    sum += value;
  }
  return nanCount === values.length ? { nanCount, min: null, max: null, sum } : { nanCount, min, max, sum };
}

/** Compares scaled values with the oracle's: float32 rounding of each value bounds the differences. */
export function assertScaledStatisticsMatch(
  actual: ReturnType<typeof scaledStatistics>,
  expected: Pick<NibabelDescription, 'nanCount' | 'min' | 'max' | 'sum' | 'absSum'>,
  what: string,
): void {
  assert.equal(actual.nanCount, expected.nanCount, `${what}: NaN count`);
  for (const bound of ['min', 'max'] as const) {
    const [got, want] = [actual[bound], expected[bound]];
    if (want === null || got === null) assert.equal(got, want, `${what}: ${bound}`);
    else assertClose(got, want, 1e-6 * Math.max(1, Math.abs(want)), `${what}: ${bound}`);
  }
  assertClose(actual.sum, expected.sum, 1e-6 * expected.absSum + 1e-9, `${what}: sum`);
}

/** Everything the reader reports about a file, against what nibabel reports about it. */
export function assertMatchesNibabel(volume: NiftiVolume, expected: NibabelDescription): void {
  const { header } = volume;
  const what = expected.file;
  assert.equal(header.version, expected.version, `${what}: version`);
  assert.deepEqual(header.dims, expected.dims, `${what}: dims`);
  assert.equal(header.datatype, expected.datatype, `${what}: datatype`);
  assert.equal(header.littleEndian, expected.littleEndian, `${what}: byte order`);
  assert.equal(header.voxOffset, expected.voxOffset, `${what}: vox_offset`);
  assert.equal(header.sclSlope, expected.sclSlope, `${what}: scl_slope`);
  assert.equal(header.sclInter, expected.sclInter, `${what}: scl_inter`);
  assert.equal(header.hasScaling, expected.sclSlope !== 1 || expected.sclInter !== 0, `${what}: hasScaling`);
  assert.deepEqual(header.pixdim, expected.pixdim, `${what}: pixdim`);
  assert.equal(header.qformCode, expected.qformCode, `${what}: qform_code`);
  assert.equal(header.sformCode, expected.sformCode, `${what}: sform_code`);
  // nibabel's fallback (both codes 0) is its centred Analyze affine; ours is diag(pixdim) by design
  if (expected.affineSource !== 'fallback') {
    assert.equal(header.affineSource, expected.affineSource, `${what}: affine source`);
    assertAffineClose(header.affine, expected.affine, `${what}: affine`);
  }
  // nibabel keeps bytes after a NUL inside descrip; NIfTI text fields end at the first NUL
  assert.equal(header.description, expected.description.split('\0')[0], `${what}: description`);
  assert.equal(volume.data.length, expected.voxelCount, `${what}: voxel count`);
  assert.equal(littleEndianSha256(volume.data), expected.sha256, `${what}: checksum of the stored voxels`);

  assertScaledStatisticsMatch(scaledStatistics(scaledValues(volume)), expected, `${what} (scaledValues)`);
  const range = volumeRange(volume);
  if (expected.min === null || expected.max === null) {
    assert.ok(Number.isNaN(range.min) && Number.isNaN(range.max), `${what}: volumeRange of all-NaN data`);
  } else {
    assertClose(
      range.min,
      expected.min,
      1e-9 * Math.max(1, Math.abs(expected.min)),
      `${what}: volumeRange min`,
    );
    assertClose(
      range.max,
      expected.max,
      1e-9 * Math.max(1, Math.abs(expected.max)),
      `${what}: volumeRange max`,
    );
  }
}
