import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  classifyBratsFileName,
  discoverBratsCases,
  discoverMappedCases,
  parseModalityMap,
} from './case-discovery.js';

// Discovery looks at names only, so empty files are enough here; decoding is tested in case-loader.spec.
async function touch(file: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, '');
}

describe('classifyBratsFileName', () => {
  it('reads the 2020, 2021 and 2023 namings', () => {
    assert.deepEqual(classifyBratsFileName('BraTS20_Training_001_t1ce.nii.gz'), {
      caseId: 'BraTS20_Training_001',
      role: 't1ce',
      style: '2020',
    });
    assert.deepEqual(classifyBratsFileName('BraTS2021_00000_flair.nii.gz'), {
      caseId: 'BraTS2021_00000',
      role: 'flair',
      style: '2021',
    });
    assert.deepEqual(classifyBratsFileName('BraTS-GLI-00000-000-t2f.nii.gz'), {
      caseId: 'BraTS-GLI-00000-000',
      role: 'flair',
      style: '2023',
      cohort: 'GLI',
    });
  });

  it('knows every 2023 suffix and the other cohorts', () => {
    const roles = ['t1n', 't1c', 't2w', 't2f', 'seg'].map(
      (s) => classifyBratsFileName(`BraTS-MET-00012-000-${s}.nii.gz`)?.role,
    );
    assert.deepEqual(roles, ['t1', 't1ce', 't2', 'flair', 'seg']);
    for (const cohort of ['MEN', 'PED', 'SSA', 'MET']) {
      assert.equal(classifyBratsFileName(`BraTS-${cohort}-00001-001-t1n.nii`)?.cohort, cohort);
    }
    assert.equal(classifyBratsFileName('BraTS-MEN-RT-0003-1-t1c.nii.gz')?.cohort, 'MEN-RT');
  });

  it('ignores names that are not BraTS files', () => {
    assert.equal(classifyBratsFileName('README.nii.gz'), undefined);
    assert.equal(classifyBratsFileName('BraTS2021_00000_t1.mha'), undefined);
    assert.equal(classifyBratsFileName('sub-01_T1w.nii.gz'), undefined);
  });
});

describe('discoverBratsCases', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-discovery-'));
    for (const s of ['t1', 't1ce', 't2', 'flair', 'seg'])
      await touch(path.join(root, 'a', 'BraTS2021_00001', `BraTS2021_00001_${s}.nii.gz`));
    for (const s of ['t1n', 't1c', 't2w', 't2f'])
      await touch(path.join(root, 'b', 'BraTS-GLI-00002-000', `BraTS-GLI-00002-000-${s}.nii.gz`));
    // flat layout, no per-case folder
    for (const s of ['t1', 't1ce', 't2', 'flair', 'seg'])
      await touch(path.join(root, 'flat', `BraTS20_Training_003_${s}.nii`));
    // missing flair
    for (const s of ['t1', 't1ce', 't2', 'seg'])
      await touch(path.join(root, 'BraTS2021_00004', `BraTS2021_00004_${s}.nii.gz`));
    // duplicated t1 (.nii and .nii.gz)
    for (const s of ['t1', 't1ce', 't2', 'flair'])
      await touch(path.join(root, 'BraTS2021_00005', `BraTS2021_00005_${s}.nii.gz`));
    await touch(path.join(root, 'BraTS2021_00005', 'BraTS2021_00005_t1.nii'));
    await touch(path.join(root, 'notes', 'readme.txt'));
  });
  after(async () => rm(root, { recursive: true, force: true }));

  it('finds complete cases in any layout and reports incomplete ones without stopping', async () => {
    const { cases, problems } = await discoverBratsCases(root);
    assert.deepEqual(
      cases.map((c) => [c.id, c.naming, Boolean(c.seg)]),
      [
        ['BraTS-GLI-00002-000', '2023', false],
        ['BraTS2021_00001', '2021', true],
        ['BraTS20_Training_003', '2020', true],
      ],
    );
    const gli = cases[0]!;
    assert.equal(gli.cohort, 'GLI');
    assert.equal(path.basename(gli.images.t1ce), 'BraTS-GLI-00002-000-t1c.nii.gz');
    assert.equal(path.basename(gli.images.flair), 'BraTS-GLI-00002-000-t2f.nii.gz');
    assert.deepEqual(
      problems.map((p) => [p.caseId, p.reason.split(':')[0]]),
      [
        ['BraTS2021_00004', 'missing modality flair'],
        ['BraTS2021_00005', 'more than one t1 file'],
      ],
    );
  });
});

describe('modality maps', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-mapped-'));
    for (const subject of ['sub-01', 'sub-02']) {
      for (const s of ['T1w', 'T1Gd', 'T2w', 'FLAIR', 'label'])
        await touch(path.join(root, subject, `${subject}_${s}.nii.gz`));
    }
    for (const s of ['T1w', 'T1Gd', 'T2w']) await touch(path.join(root, 'sub-03', `sub-03_${s}.nii.gz`));
  });
  after(async () => rm(root, { recursive: true, force: true }));

  it('parses the inline form and finds cases by pattern, one per folder', async () => {
    const map = await parseModalityMap(
      't1=*_T1w.nii.gz,t1ce=*_T1Gd.nii.gz,t2=*_T2w.nii.gz,flair=*_FLAIR.nii.gz,seg=*_label.nii.gz',
    );
    const { cases, problems } = await discoverMappedCases(root, map);
    assert.deepEqual(
      cases.map((c) => c.id),
      ['sub-01', 'sub-02'],
    );
    assert.equal(path.basename(cases[1]!.seg!), 'sub-02_label.nii.gz');
    assert.equal(cases[0]!.naming, 'mapped');
    assert.deepEqual(
      problems.map((p) => [p.caseId, p.reason]),
      [['sub-03', 'missing modality flair (by the modality map)']],
    );
  });

  it('parses the JSON form', async () => {
    const file = path.join(root, 'map.json');
    await writeFile(
      file,
      JSON.stringify({
        t1: '*_T1w.nii.gz',
        t1ce: '*_T1Gd.nii.gz',
        t2: '*_T2w.nii.gz',
        flair: '*_FLAIR.nii.gz',
      }),
    );
    const map = await parseModalityMap(file);
    assert.equal(map.flair, '*_FLAIR.nii.gz');
    assert.equal(map.seg, undefined);
  });

  it('refuses incomplete or malformed maps with a reason', async () => {
    await assert.rejects(parseModalityMap('t1=a,t2=b'), /no pattern for t1ce, flair/);
    await assert.rejects(parseModalityMap('t1=a,t1ce=b,t2=c,flair=d,dwi=e'), /unknown modality "dwi"/);
    await assert.rejects(parseModalityMap('t1'), /not of the form modality=pattern/);
    await assert.rejects(parseModalityMap(path.join(root, 'missing.json')), /missing\.json/);
  });
});
