// The fedsynth command line as a user runs it: a separate process, real files, exit codes and output.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fedsynth } from '../support/cli.js';
import { sharedDataFile } from '@fedsynth/common/testing/paths';

describe('fedsynth CLI', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-cli-'));
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  it('--help lists the commands', async () => {
    const { code, stdout } = await fedsynth('--help');
    assert.equal(code, 0);
    for (const command of ['phantom', 'inspect', 'slices', 'demo'])
      assert.match(stdout, new RegExp(`\\n  ${command}\\b`));
  });

  it('inspect --json reports the real BraTS 2023 case', async () => {
    const { code, stdout } = await fedsynth(
      'inspect',
      sharedDataFile('brats-sample', 'BraTS-GLI-00000-000'),
      '--json',
    );
    assert.equal(code, 0);
    const report = JSON.parse(stdout);
    assert.equal(report.caseId, 'BraTS-GLI-00000-000');
    assert.equal(report.scheme.name, '2023');
    assert.deepEqual(report.labels.canonical, { NCR: 11738, ED: 12836, ET: 32731 });
    assert.deepEqual(report.modalities.t1.dims, [240, 240, 155]);
    assert.equal(report.modalities.t1.datatype, 'int16');
    assert.equal(report.seg.affineSource, 'qform');
    assert.ok(report.brainVoxels > 1_000_000 && report.brainVoxels < 8_928_000);
  });

  it('phantom then slices: a broken case is skipped and reported; --strict turns that into exit code 3', async () => {
    const data = path.join(tmp, 'phantom');
    const made = await fedsynth(
      'phantom',
      '--out',
      data,
      '--sites',
      '2',
      '--cases',
      '3',
      '--seed',
      '5',
      '--dims',
      '48x48x24',
      '--json',
    );
    assert.equal(made.code, 0, made.stderr);
    const manifest = JSON.parse(made.stdout);
    assert.equal(manifest.sites.length, 2);
    const site1 = manifest.sites[0];
    assert.ok(site1.cases.length >= 2, 'unequal sizes put the larger share first');
    const broken = site1.cases[0];
    await writeFile(path.join(site1.dir, broken, `${broken}-t1n.nii.gz`), 'not nifti');

    const out = path.join(tmp, 'site1.fss');
    const lenient = await fedsynth('slices', site1.dir, '--preset', 'cpu32', '--out', out, '--json');
    assert.equal(lenient.code, 0, lenient.stderr);
    const summary = JSON.parse(lenient.stdout);
    assert.equal(summary.casesSliced, site1.cases.length - 1);
    assert.equal(summary.skipped[0].caseId, broken);
    assert.match(summary.skipped[0].file, /-t1n\.nii\.gz$/);

    const strict = await fedsynth('slices', site1.dir, '--preset', 'cpu32', '--out', out, '--strict');
    assert.equal(strict.code, 3);
    assert.match(strict.stdout, new RegExp(`skipped ${broken}`));
  });

  it('bad arguments exit 2 with a message naming the option', async () => {
    const bad = await fedsynth('slices', tmp, '--out', path.join(tmp, 'x.fss'), '--preset', 'huge');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--preset must be paper, cpu64, cpu32 or cpu16, got "huge"/);
    const noOut = await fedsynth('slices', tmp);
    assert.equal(noOut.code, 2, 'a missing required option is a usage error');
    assert.match(noOut.stderr, /required option '--out <file>' not specified/);
    const missing = await fedsynth('inspect', path.join(tmp, 'nothing-here'));
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /nothing-here/);
    assert.deepEqual(await readdir(tmp).then((f) => f.includes('x.fss')), false);
  });
});
