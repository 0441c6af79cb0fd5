import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sharedDataFile } from '../testing/paths.js';
import { writeTinyCase, rampVolume } from '../testing/tiny-case.js';
import { discoverBratsCases } from './case-discovery.js';
import { CaseError } from './case-error.js';
import { loadCase } from './case-loader.js';

const DIMS: [number, number, number] = [6, 5, 4];
const N = DIMS[0] * DIMS[1] * DIMS[2];

async function loadOnly(dir: string, options: Parameters<typeof loadCase>[1] = {}) {
  const { cases, problems } = await discoverBratsCases(dir);
  assert.equal(cases.length, 1, `expected one case in ${dir}: ${JSON.stringify(problems)}`);
  return loadCase(cases[0]!, options);
}

function labelsWith(values: number[]): Uint8Array {
  const seg = new Uint8Array(N);
  values.forEach((v, i) => (seg[i * 3] = v));
  return seg;
}

describe('loadCase on the real BraTS 2023 sample', () => {
  it('maps the 2023 labels to canonical counts and falls back to the qform for the seg', async () => {
    const dir = sharedDataFile('brats-sample');
    const loaded = await loadOnly(dir);
    assert.equal(loaded.id, 'BraTS-GLI-00000-000');
    assert.deepEqual(loaded.dims, [240, 240, 155]);
    assert.equal(loaded.scheme, '2023');
    assert.equal(loaded.schemeSource, 'naming');
    assert.deepEqual(loaded.canonicalCounts, { NCR: 11738, ED: 12836, ET: 32731 });
    assert.deepEqual(loaded.rawLabelCounts, { '0': 8870695, '1': 11738, '2': 12836, '3': 32731 });
    assert.equal(loaded.seg?.header.sformCode, 0);
    assert.equal(loaded.seg?.header.affineSource, 'qform');
    let tumourOutsideBrain = 0;
    const t1 = loaded.images.t1.data;
    loaded.labels!.forEach((l, i) => {
      if (l > 0 && t1[i]! <= 0) tumourOutsideBrain++;
    });
    assert.equal(tumourOutsideBrain, 0);
  });
});

describe('loadCase on hand-made cases', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-loader-'));
  });
  after(async () => rm(root, { recursive: true, force: true }));

  const caseDir = (name: string) => path.join(root, name);

  it('maps 2017-2022 labels (ET = 4) by naming', async () => {
    const dir = caseDir('ok2021');
    await writeTinyCase({ dir, id: 'BraTS2021_00001', dims: DIMS, seg: labelsWith([1, 2, 2, 4, 4, 4]) });
    const loaded = await loadOnly(dir);
    assert.equal(loaded.scheme, '2017');
    assert.deepEqual(loaded.canonicalCounts, { NCR: 1, ED: 2, ET: 3 });
    assert.equal(loaded.labels![9], 3, 'raw 4 becomes canonical ET (3)');
  });

  it('detects 2013-2016 labels from the values and merges non-enhancing into NCR', async () => {
    const dir = caseDir('old');
    await writeTinyCase({ dir, id: 'Brats13_0001', dims: DIMS, seg: labelsWith([1, 2, 3, 3, 4]) });
    const loaded = await loadOnly(dir);
    assert.equal(loaded.scheme, '2013');
    assert.equal(loaded.schemeSource, 'label values');
    assert.deepEqual(loaded.canonicalCounts, { NCR: 3, ED: 1, ET: 1 });
  });

  it('lets the user force the scheme', async () => {
    const dir = caseDir('forced');
    await writeTinyCase({ dir, id: 'case_0007', dims: DIMS, seg: labelsWith([1, 3]) });
    const loaded = await loadOnly(dir, { labels: '2013' });
    assert.equal(loaded.schemeSource, 'option');
    assert.deepEqual(loaded.canonicalCounts, { NCR: 2, ED: 0, ET: 0 });
  });

  it('refuses a label the scheme does not know, naming case and file', async () => {
    const dir = caseDir('unknown');
    await writeTinyCase({ dir, id: 'BraTS2021_00002', dims: DIMS, seg: labelsWith([1, 3]) });
    await assert.rejects(loadOnly(dir), (error: unknown) => {
      assert.ok(error instanceof CaseError);
      assert.equal(error.caseId, 'BraTS2021_00002');
      assert.match(error.file!, /BraTS2021_00002_seg\.nii\.gz$/);
      assert.match(error.reason, /label value 3 is not part of the 2017 label scheme/);
      return true;
    });
  });

  it('refuses non-integer labels', async () => {
    const dir = caseDir('fractional');
    const seg = new Float32Array(N);
    seg[7] = 1.5;
    await writeTinyCase({ dir, id: 'BraTS2021_00003', dims: DIMS, seg, segDatatype: 'float32' });
    await assert.rejects(
      loadOnly(dir),
      /BraTS2021_00003_seg\.nii\.gz: label value 1\.50000 at voxel 7 is not a known integer label/,
    );
  });

  it('refuses grids that differ between modalities', async () => {
    const dir = caseDir('grid');
    await writeTinyCase({
      dir,
      id: 'BraTS2021_00004',
      dims: DIMS,
      dimsOverride: { flair: [6, 5, 3] },
      images: { flair: rampVolume([6, 5, 3], 3) },
    });
    await assert.rejects(
      loadOnly(dir),
      /BraTS2021_00004_flair\.nii\.gz: grid 6x5x3 differs from .*_t1\.nii\.gz's 6x5x4/,
    );
  });

  it('refuses NaN and infinite voxels', async () => {
    const dir = caseDir('nan');
    const t2 = new Float32Array(N).fill(10);
    t2[11] = Number.NaN;
    const images = {
      t1: new Float32Array(N).fill(1),
      t1ce: new Float32Array(N).fill(1),
      t2,
      flair: new Float32Array(N).fill(1),
    };
    await writeTinyCase({ dir, id: 'BraTS2021_00005', dims: DIMS, images, imageDatatype: 'float32' });
    await assert.rejects(loadOnly(dir), /BraTS2021_00005_t2\.nii\.gz: voxel 11 is NaN/);
  });

  it('refuses 4-D volumes for a case', async () => {
    const dir = caseDir('fourd');
    await writeTinyCase({
      dir,
      id: 'BraTS2021_00006',
      dims: DIMS,
      dimsOverride: { t1ce: [6, 5, 2, 2] },
    });
    await assert.rejects(loadOnly(dir), /BraTS2021_00006_t1ce\.nii\.gz: is 4-D \(6x5x2x2\)/);
  });

  it('accepts an unlabelled case only when allowed', async () => {
    const dir = caseDir('unlabelled');
    await writeTinyCase({ dir, id: 'BraTS2021_00008', dims: DIMS, seg: null });
    await assert.rejects(loadOnly(dir), /no annotation \(seg\) file.*--allow-unlabelled/);
    const loaded = await loadOnly(dir, { allowUnlabelled: true });
    assert.equal(loaded.labels, undefined);
    assert.deepEqual(loaded.dims, DIMS);
  });

  it('names a missing or corrupt file', async () => {
    const dir = caseDir('corrupt');
    await writeTinyCase({ dir, id: 'BraTS2021_00009', dims: DIMS });
    const { writeFile } = await import('node:fs/promises');
    await writeFile(
      path.join(dir, 'BraTS2021_00009', 'BraTS2021_00009_t2.nii.gz'),
      Buffer.from('not a nifti file at all'),
    );
    await assert.rejects(loadOnly(dir), (error: unknown) => {
      assert.ok(error instanceof CaseError);
      assert.match(error.message, /case BraTS2021_00009: .*BraTS2021_00009_t2\.nii\.gz: /);
      return true;
    });
  });
});
