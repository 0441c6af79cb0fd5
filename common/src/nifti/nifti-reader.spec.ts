// The reader against nibabel: the real shared files (expectations in test/fixtures, made by
// test/oracles/nifti_compat_expected.py) and files nibabel writes in every datatype and byte order.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { repoRoot, sharedDataFile } from '../testing/paths.js';
import { NiftiFormatError } from './nifti-error.js';
import { decodeNifti, readNifti, readNiftiHeader } from './nifti-reader.js';
import {
  assertAffineClose,
  assertMatchesNibabel,
  littleEndianSha256,
  runNibabelOracle,
  type NibabelDescription,
} from './nifti-spec-helpers.js';

interface CompatFixture {
  images: NibabelDescription[];
  refused: { file: string; nibabel: string }[];
}

const fixture = JSON.parse(
  await readFile(path.join(repoRoot(), 'test', 'fixtures', 'nifti-compat.expected.json'), 'utf8'),
) as CompatFixture;

const compat = (name: string) => sharedDataFile('nifti-compat', name);
const bratsSeg = sharedDataFile('brats-sample', 'BraTS-GLI-00000-000', 'BraTS-GLI-00000-000-seg.nii.gz');

/** Rejects with a NiftiFormatError for `file` whose reason matches every pattern. */
async function assertRefused(promise: Promise<unknown>, file: string, ...reasons: RegExp[]): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof NiftiFormatError, `expected a NiftiFormatError, got ${String(error)}`);
    assert.equal(error.file, file);
    assert.equal(error.message, `${file}: ${error.reason}`);
    for (const reason of reasons) assert.match(error.reason, reason);
    return true;
  });
}

/** The uncompressed file with sform_code set to 0, so a reader must take the qform. */
function withoutSform(fileBytes: Buffer, expected: NibabelDescription): Buffer {
  const bytes = Buffer.from(
    fileBytes[0] === 0x1f && fileBytes[1] === 0x8b ? gunzipSync(fileBytes) : fileBytes,
  );
  if (expected.version === 1) {
    if (expected.littleEndian) bytes.writeInt16LE(0, 254);
    else bytes.writeInt16BE(0, 254);
  } else if (expected.littleEndian) bytes.writeInt32LE(0, 348);
  else bytes.writeInt32BE(0, 348);
  return bytes;
}

describe('readNifti on the shared real files, against nibabel', () => {
  for (const expected of fixture.images) {
    it(expected.file, async () => {
      const file = sharedDataFile(...expected.file.split('/'));
      const volume = await readNifti(file);
      assert.equal(volume.file, file);
      assertMatchesNibabel(volume, expected);
      assert.deepEqual(await readNiftiHeader(file), volume.header, 'readNiftiHeader agrees with readNifti');
    });
  }

  it('derives the qform like nibabel for every file that has one', async () => {
    const withQform = fixture.images.filter((expected) => expected.qformAffine !== null);
    assert.ok(withQform.length >= 15);
    for (const expected of withQform) {
      const bytes = withoutSform(await readFile(sharedDataFile(...expected.file.split('/'))), expected);
      const { header } = await decodeNifti(bytes, expected.file);
      assert.equal(header.affineSource, 'qform', expected.file);
      // When b²+c²+d² is within 1e-7 of 1 (nibabel-example4d), nifti1_io and this reader take the quaternion's
      // a as 0, nibabel as the square root of the remainder: rotations ~1e-4 rad apart, so the tolerance
      // scales with the voxel size.
      const voxelSize = Math.max(...header.pixdim.slice(0, 3));
      assertAffineClose(header.affine, expected.qformAffine!, `${expected.file}: qform`, 1e-4 * voxelSize);
    }
  });

  it('falls back to the qform for the BraTS seg, whose sform_code is 0', async () => {
    const { header } = await readNifti(bratsSeg);
    assert.equal(header.sformCode, 0);
    assert.ok(header.qformCode > 0);
    assert.equal(header.affineSource, 'qform');
  });

  it('reads 4-D and 5-D files', async () => {
    const fiveD = await readNifti(compat('5D_small.nii'));
    assert.deepEqual(fiveD.header.dims, [1, 2, 3, 1, 3]);
    const fourD = await readNifti(compat('nibabel-functional.nii'));
    assert.equal(fourD.header.dims.length, 4);
    assert.equal(fourD.header.hasScaling, true);
  });
});

describe('readNifti refuses what it cannot read, naming the file and the reason', () => {
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'fedsynth-nifti-reader-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('every file nibabel does not read as a single-file NIfTI image', async () => {
    assert.deepEqual(
      fixture.refused.map((entry) => entry.file),
      [
        'air.hdr.gz',
        'air.img.gz',
        'air2.hdr.gz',
        'air2.img.gz',
        'nibabel-nifti1.hdr',
        'nibabel-nifti2.hdr',
        'not-nifti.nii',
      ].map((name) => `nifti-compat/${name}`),
    );
    for (const { file } of fixture.refused) {
      const absolute = sharedDataFile(...file.split('/'));
      await assertRefused(readNifti(absolute), absolute);
      await assertRefused(readNiftiHeader(absolute), absolute);
    }
  });

  it('not-nifti.nii: not a NIfTI file', async () => {
    await assertRefused(readNifti(compat('not-nifti.nii')), compat('not-nifti.nii'), /^not a NIfTI file/);
  });

  it('a header-only .hdr of a pair (NIfTI-1 and NIfTI-2): the image is a separate .img, pairs unsupported', async () => {
    for (const [name, version] of [
      ['nibabel-nifti1.hdr', 1],
      ['nibabel-nifti2.hdr', 2],
      ['air.hdr.gz', 1],
      ['air2.hdr.gz', 2],
    ] as const) {
      await assertRefused(
        readNifti(compat(name)),
        compat(name),
        new RegExp(`NIfTI-${version} header of a \\.hdr/\\.img pair`),
        /separate \.img file/,
        /not supported/,
      );
    }
  });

  it('a truncated file: how many voxel bytes were expected and found', async () => {
    const source = await readFile(compat('avg152T1_LR_nifti.nii')); // uint8, vox_offset 352
    const truncated = path.join(scratch, 'truncated.nii');
    await writeFile(truncated, source.subarray(0, source.length - 1000));
    const expectedBytes = 91 * 109 * 91;
    const foundBytes = source.length - 1000 - 352;
    await assertRefused(
      readNifti(truncated),
      truncated,
      new RegExp(`^truncated: expected ${expectedBytes} bytes of voxel data, found ${foundBytes}$`),
    );
    // the same inside a valid gzip stream
    const truncatedGz = path.join(scratch, 'truncated.nii.gz');
    await writeFile(truncatedGz, gzipSync(source.subarray(0, 2000)));
    await assertRefused(readNifti(truncatedGz), truncatedGz, /^truncated: .* found 1648$/);
  });

  it('a cut gzip stream and a corrupted one: unreadable gzip data', async () => {
    const source = await readFile(compat('avg152T1_LR_nifti.nii.gz'));
    const cut = path.join(scratch, 'cut.nii.gz');
    await writeFile(cut, source.subarray(0, source.length / 2));
    await assertRefused(readNifti(cut), cut, /^unreadable gzip data \(.+\)$/);
    // the header is at the start, so reading only the header still works
    assert.deepEqual(
      await readNiftiHeader(cut),
      (await readNifti(compat('avg152T1_LR_nifti.nii.gz'))).header,
    );

    const corrupted = Buffer.from(source);
    for (let i = 1000; i < 1064; i++) corrupted[i] ^= 0x5a;
    const corruptFile = path.join(scratch, 'corrupt.nii.gz');
    await writeFile(corruptFile, corrupted);
    await assertRefused(readNifti(corruptFile), corruptFile, /^unreadable gzip data/);
    const garbageAfterMagic = path.join(scratch, 'garbage.nii.gz');
    await writeFile(garbageAfterMagic, Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5]));
    await assertRefused(readNifti(garbageAfterMagic), garbageAfterMagic, /^unreadable gzip data/);
    await assertRefused(readNiftiHeader(garbageAfterMagic), garbageAfterMagic, /^unreadable gzip data/);
  });

  it('a file too short for a header, and a header with impossible dims', async () => {
    const source = await readFile(compat('nibabel-anatomical.nii')); // big-endian
    await assertRefused(
      decodeNifti(source.subarray(0, 200), 'short.nii'),
      'short.nii',
      /^not a NIfTI file: 200 bytes, shorter than a NIfTI-1 header \(348\)$/,
    );
    await assertRefused(
      decodeNifti(new Uint8Array(0), 'empty.nii'),
      'empty.nii',
      /^not a NIfTI file: 0 bytes/,
    );
    const noDims = Buffer.from(source);
    noDims.writeInt16BE(0, 40);
    await assertRefused(decodeNifti(noDims, 'no-dims.nii'), 'no-dims.nii', /^invalid dim\[0\] = 0/);
    const zeroSize = Buffer.from(source);
    zeroSize.writeInt16BE(0, 44);
    await assertRefused(decodeNifti(zeroSize, 'zero.nii'), 'zero.nii', /^invalid dim\[2\] = 0/);
  });

  it('unsupported datatypes, named by code and type', async () => {
    const source = await readFile(compat('nibabel-anatomical.nii')); // big-endian
    for (const [code, name] of [
      [128, 'RGB24'],
      [32, 'complex64'],
      [1024, 'int64'],
    ] as const) {
      const bytes = Buffer.from(source);
      bytes.writeInt16BE(code, 70);
      await assertRefused(
        decodeNifti(bytes, 'patched.nii'),
        'patched.nii',
        new RegExp(`^unsupported datatype code ${code} \\(${name}\\); supported: uint8, `),
      );
    }
  });
});

describe('readNifti on files nibabel writes: every datatype, both byte orders, NIfTI-1 and -2', () => {
  let scratch: string;
  let written: NibabelDescription[];
  let analyzeHeader: string;
  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'fedsynth-nifti-variants-'));
    ({ images: written, analyzeHeader } = await runNibabelOracle<{
      images: NibabelDescription[];
      analyzeHeader: string;
    }>(['write-variants', scratch]));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('matches nibabel on all of them', async () => {
    assert.equal(written.length, 32);
    for (const expected of written) {
      assertMatchesNibabel(await readNifti(expected.file), expected);
      assert.deepEqual(await readNiftiHeader(expected.file), (await readNifti(expected.file)).header);
    }
    const kinds = new Set(
      written.map((e) => `${e.version}/${e.datatype}/${e.littleEndian}/${e.affineSource}`),
    );
    assert.equal(kinds.size, 32);
  });

  it('refuses the Analyze 7.5 header nibabel writes: Analyze 7.5, not NIfTI', async () => {
    await assertRefused(readNifti(analyzeHeader), analyzeHeader, /^Analyze 7\.5 header/, /not NIfTI/);
  });
});

describe('decodeNifti', () => {
  it('copies out of unaligned input and never aliases the caller’s bytes', async () => {
    for (const name of [
      'nibabel-anatomical.nii',
      'nibabel-functional.nii',
      'nibabel-resampled_anat_moved.nii',
    ]) {
      const expected = fixture.images.find((entry) => entry.file === `nifti-compat/${name}`)!;
      const source = await readFile(compat(name));
      const shifted = new Uint8Array(source.length + 1);
      shifted.set(source, 1);
      const input = shifted.subarray(1); // byteOffset 1: no typed array of 2 or 4 bytes can view it
      const volume = await decodeNifti(input, name);
      assert.equal(littleEndianSha256(volume.data), expected.sha256, name);
      input.fill(0);
      assert.equal(littleEndianSha256(volume.data), expected.sha256, `${name} after the input was cleared`);
    }
  });
});
