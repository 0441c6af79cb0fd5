// The writer: round trips through our reader, and every written file read back by nibabel.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeNifti, readNifti } from './nifti-reader.js';
import {
  assertAffineClose,
  assertScaledStatisticsMatch,
  littleEndianSha256,
  runNibabelOracle,
  scaledStatistics,
  type NibabelDescription,
} from './nifti-spec-helpers.js';
import { NIFTI_DATATYPES, type NiftiDatatype, type NiftiWriteSpec, type VoxelArray } from './nifti-types.js';
import { encodeNifti, encodeNiftiHeader, writeNifti } from './nifti-writer.js';

const DATATYPES = Object.keys(NIFTI_DATATYPES) as NiftiDatatype[];

/** Deterministic uniform numbers in [0, 1) (mulberry32), so a failure reproduces. */
function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integers: random bytes, so every value of the type can occur. Floats: finite values and one NaN. */
function randomVoxels(datatype: NiftiDatatype, count: number, random: () => number): VoxelArray {
  const data = new NIFTI_DATATYPES[datatype].arrayType(count);
  if (datatype === 'float32' || datatype === 'float64') {
    for (let i = 0; i < count; i++) data[i] = (random() - 0.3) * 5000;
    data[1] = NaN;
  } else {
    const bytes = new Uint8Array(data.buffer);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  }
  return data;
}

/** Rotation about a unit axis by an angle, times diag(spacing), plus an offset. */
function rigidAffine(axis: number[], angle: number, spacing: number[], offset: number[]): number[][] {
  const norm = Math.hypot(...axis);
  const [x, y, z] = axis.map((v) => v / norm);
  const [c, s, t] = [Math.cos(angle), Math.sin(angle), 1 - Math.cos(angle)];
  const rotation = [
    [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
    [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
    [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
  ];
  return [...rotation.map((row, i) => [...row.map((v, j) => v * spacing[j]), offset[i]]), [0, 0, 0, 1]];
}

// a left-handed oblique grid (qfac -1), a 180-degree turn (quaternion a = 0) and the usual LPS->RAS flip
const AFFINES = [
  rigidAffine([0.3, -0.5, 0.8], 0.4, [-1.5, 2, 2.5], [-40, 12.5, 7.25]),
  rigidAffine([0, 0, 1], Math.PI, [1, 1, 1.2], [10, -20, 30]),
  [
    [-1, 0, 0, 120],
    [0, -1, 0, 119],
    [0, 0, 1, -77],
    [0, 0, 0, 1],
  ],
];

interface Case {
  name: string;
  spec: NiftiWriteSpec;
  gzip: boolean;
}

function writeCases(): Case[] {
  const random = randomSource(7);
  const cases: Case[] = [];
  DATATYPES.forEach((datatype, index) => {
    for (const gzip of [false, true]) {
      for (const withAffine of [false, true]) {
        const dims = withAffine ? [6, 5, 4, 2] : [7, 5, 3];
        const voxelCount = dims.reduce((product, size) => product * size, 1);
        const data = randomVoxels(datatype, voxelCount, random);
        const spec: NiftiWriteSpec = withAffine
          ? {
              dims,
              datatype,
              data,
              affine: AFFINES[(index + (gzip ? 1 : 0)) % AFFINES.length],
              sclSlope: 0.37,
              sclInter: -12.5,
              description: `fedsynth ${datatype}`,
            }
          : { dims, datatype, data, pixdim: [0.9, 1.1, 3] };
        cases.push({
          name: `${datatype}-${withAffine ? 'affine' : 'plain'}${gzip ? '.nii.gz' : '.nii'}`,
          spec,
          gzip,
        });
      }
    }
  });
  return cases;
}

/** Statistics of the values a reader should see: stored values times the float32 slope plus intercept. */
function expectedStatistics(spec: NiftiWriteSpec) {
  const slope = spec.sclSlope === undefined ? 1 : Math.fround(spec.sclSlope);
  const inter = spec.sclInter === undefined ? 0 : Math.fround(spec.sclInter);
  const scaled = Float64Array.from(spec.data, (value) => value * slope + inter);
  const absSum = scaled.reduce((sum, value) => (Number.isNaN(value) ? sum : sum + Math.abs(value)), 0);
  return { ...scaledStatistics(scaled), absSum };
}

function sameBytes(actual: VoxelArray, expected: VoxelArray): boolean {
  return Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(
    Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength),
  );
}

/** The encoded file with sform_code 0, so a reader must rebuild the affine from the qform. */
function withoutSform(encoded: Buffer): Buffer {
  const copy = Buffer.from(encoded);
  copy.writeInt16LE(0, 254);
  return copy;
}

describe('encodeNifti / decodeNifti round trip', () => {
  for (const { name, spec } of writeCases()) {
    it(name, async () => {
      const encoded = encodeNifti(spec);
      assert.equal(encoded.length, 352 + spec.data.byteLength);
      assert.deepEqual(encoded.subarray(0, 352), encodeNiftiHeader(spec));
      const { header, data } = await decodeNifti(encoded, name);
      assert.equal(header.version, 1);
      assert.equal(header.littleEndian, true);
      assert.equal(header.voxOffset, 352);
      assert.deepEqual(header.dims, spec.dims);
      assert.equal(header.datatype, spec.datatype);
      assert.equal(data.constructor, spec.data.constructor);
      assert.ok(sameBytes(data, spec.data), 'voxels survive bit for bit');
      assert.equal(header.description, spec.description ?? '');
      if (spec.affine) {
        assert.equal(header.sclSlope, Math.fround(spec.sclSlope!));
        assert.equal(header.sclInter, Math.fround(spec.sclInter!));
        assert.equal(header.hasScaling, true);
        assert.deepEqual([header.qformCode, header.sformCode], [1, 1]);
        assert.equal(header.affineSource, 'sform');
        assertAffineClose(header.affine, spec.affine, 'sform');
        const fromQform = await decodeNifti(withoutSform(encoded), name);
        assert.equal(fromQform.header.affineSource, 'qform');
        assertAffineClose(fromQform.header.affine, spec.affine, 'qform');
      } else {
        assert.equal(header.hasScaling, false);
        assert.deepEqual([header.qformCode, header.sformCode], [0, 0]);
        assert.equal(header.affineSource, 'pixdim');
        assert.deepEqual(header.pixdim, spec.pixdim!.map(Math.fround));
        assertAffineClose(
          header.affine,
          [
            [0.9, 0, 0, 0],
            [0, 1.1, 0, 0],
            [0, 0, 3, 0],
            [0, 0, 0, 1],
          ],
          'pixdim affine',
        );
      }
    });
  }
});

describe('writeNifti, read back by our reader and by nibabel', () => {
  const cases = writeCases();
  let scratch: string;
  const files = new Map<string, string>();
  let described: Map<string, NibabelDescription>;

  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'fedsynth-nifti-writer-'));
    for (const { name, spec } of cases) {
      const file = path.join(scratch, name);
      await writeNifti(file, spec);
      files.set(name, file);
    }
    const descriptions = await runNibabelOracle<NibabelDescription[]>(['describe', ...files.values()]);
    described = new Map(descriptions.map((description) => [description.file, description]));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('writes gzip exactly for .gz names and leaves no temporary files', async () => {
    for (const { name, gzip } of cases) {
      const head = (await readFile(files.get(name)!)).subarray(0, 2);
      assert.equal(head[0] === 0x1f && head[1] === 0x8b, gzip, name);
    }
    assert.deepEqual((await readdir(scratch)).sort(), cases.map((c) => c.name).sort());
  });

  it('our reader gets back what was written', async () => {
    for (const { name, spec } of cases) {
      const volume = await readNifti(files.get(name)!);
      const decoded = await decodeNifti(encodeNifti(spec), name);
      assert.deepEqual(volume.header, decoded.header, name);
      assert.ok(sameBytes(volume.data, spec.data), name);
    }
  });

  it('nibabel reads the same grid, datatype, scaling, affine and voxels', () => {
    for (const { name, spec } of cases) {
      const nibabel = described.get(files.get(name)!)!;
      assert.ok(nibabel, `nibabel described ${name}`);
      assert.equal(nibabel.version, 1, name);
      assert.deepEqual(nibabel.dims, spec.dims, name);
      assert.equal(nibabel.datatype, spec.datatype, name);
      assert.equal(nibabel.voxOffset, 352, name);
      assert.equal(nibabel.sha256, littleEndianSha256(spec.data), `${name}: voxel checksum`);
      assert.equal(nibabel.description, spec.description ?? '', name);
      assertScaledStatisticsMatch(expectedStatistics(spec), nibabel, name);
      if (spec.affine) {
        assert.equal(nibabel.sclSlope, Math.fround(spec.sclSlope!), name);
        assert.equal(nibabel.sclInter, Math.fround(spec.sclInter!), name);
        assert.deepEqual([nibabel.qformCode, nibabel.sformCode], [1, 1], name);
        assertAffineClose(nibabel.affine, spec.affine, `${name}: nibabel's affine`);
        // nibabel's own quaternion maths on the qform we wrote
        assertAffineClose(nibabel.qformAffine!, spec.affine, `${name}: nibabel's qform`);
      } else {
        assert.deepEqual([nibabel.sclSlope, nibabel.sclInter], [1, 0], name);
        assert.deepEqual([nibabel.qformCode, nibabel.sformCode], [0, 0], name);
        assert.deepEqual(nibabel.pixdim, spec.pixdim!.map(Math.fround), name);
      }
    }
  });

  it('honours gzipLevel and replaces an existing file whole', async () => {
    const spec = cases.find((c) => c.name === 'int16-affine.nii.gz')!.spec;
    const file = path.join(scratch, 'levels.nii.gz');
    await writeFile(file, 'an older, different file');
    await writeNifti(file, spec, { gzipLevel: 1 });
    const fast = (await readFile(file)).length;
    await writeNifti(file, spec, { gzipLevel: 9 });
    assert.ok((await readFile(file)).length <= fast);
    assert.ok(sameBytes((await readNifti(file)).data, spec.data));
    await rm(file);
  });

  it('leaves nothing behind when the write fails', async () => {
    const spec = cases[0].spec;
    const missingFolder = path.join(scratch, 'no-such-folder', 'x.nii');
    await assert.rejects(writeNifti(missingFolder, spec), { code: 'ENOENT' });
    await assert.rejects(writeNifti(path.join(scratch, 'bad.nii.gz'), spec, { gzipLevel: 42 }), RangeError);
    assert.deepEqual((await readdir(scratch)).sort(), cases.map((c) => c.name).sort());
  });
});

describe('encodeNifti refuses specs it cannot write faithfully', () => {
  const data = new Int16Array(24);
  const base: NiftiWriteSpec = { dims: [2, 3, 4], datatype: 'int16', data };

  it('data of the wrong type or length', () => {
    assert.throws(() => encodeNifti({ ...base, data: new Float32Array(24) }), /int16 needs a Int16Array/);
    assert.throws(() => encodeNifti({ ...base, data: new Int16Array(23) }), /hold 24 voxels, data has 23/);
  });

  it('dims NIfTI-1 cannot hold', () => {
    assert.throws(() => encodeNifti({ ...base, dims: [2, 3, 4, 1, 1, 1, 1, 1] }), /1 to 7 dimensions/);
    assert.throws(() => encodeNifti({ ...base, dims: [24, 1, 0] }), /integers from 1 to 32767/);
  });

  it('a pixdim that contradicts the affine, a malformed affine, a long description', () => {
    assert.throws(
      () => encodeNifti({ ...base, affine: AFFINES[2], pixdim: [2, 1, 1] }),
      /pixdim\[1\] = 2 disagrees/,
    );
    assert.throws(() => encodeNifti({ ...base, affine: [[1, 0, 0, 0]] }), /affine must be 4x4/);
    assert.throws(
      () =>
        encodeNifti({
          ...base,
          affine: [
            [1, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
          ],
        }),
      /zero or non-finite column/,
    );
    assert.throws(() => encodeNifti({ ...base, description: 'x'.repeat(80) }), /at most 79 printable ASCII/);
  });
});
