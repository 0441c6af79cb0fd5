// train-seg and eval-seg as a user runs them: phantom cases -> slices -> U-Net trained in 2 worker threads ->
// per-subject metrics on held-out phantom subjects. Tiny sizes; behaviour, not quality, is checked here
// (the README records what the cpu profile reaches in 10 minutes).
import assert from 'node:assert/strict';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fedsynth } from '../support/cli.js';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { buildSliceStore } from '@fedsynth/common/slices/index';
import { decodeWeights } from '@fedsynth/common/ml/weights/index';

describe('train-seg and eval-seg', () => {
  let tmp: string;
  let trainDir: string;
  let heldOutDir: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-seg-'));
    const dims: [number, number, number] = [240, 240, 155]; // phantom anatomy scales with the grid: keep BraTS's
    trainDir = (
      await writePhantomSites({
        out: path.join(tmp, 'train'),
        sites: 1,
        cases: 4,
        seed: 2,
        naming: '2021',
        dims,
      })
    ).sites[0]!.dir;
    heldOutDir = (
      await writePhantomSites({
        out: path.join(tmp, 'held'),
        sites: 1,
        cases: 2,
        seed: 77,
        naming: '2023',
        dims,
      })
    ).sites[0]!.dir;
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  it('trains a tiny U-Net in 2 workers from a data folder, writes weights + card, and the loss falls', async () => {
    const out = path.join(tmp, 'unet');
    const run = await fedsynth(
      'train-seg',
      '--data',
      trainDir,
      '--out',
      out,
      '--model',
      'unet',
      '--profile',
      'tiny',
      '--steps',
      '24',
      '--batch',
      '8',
      '--workers',
      '2',
      '--checkpoint-every',
      '12',
      '--no-augment',
      '--json',
    );
    assert.equal(run.code, 0, run.stderr);
    const card = JSON.parse(run.stdout);
    assert.equal(card.steps, 24);
    assert.equal(card.workers, 2);
    assert.equal(card.architecture.name, 'unet');
    assert.equal(card.losses.length, 24);
    const early = (card.losses[0] + card.losses[1] + card.losses[2]) / 3;
    const late = (card.losses[21] + card.losses[22] + card.losses[23]) / 3;
    assert.ok(late < early, `loss should fall: first ${early.toFixed(3)}, last ${late.toFixed(3)}`);
    assert.match(run.stderr, /train-seg 24\/24 steps/);
    const weights = decodeWeights(await readFile(path.join(out, 'model.weights')), 'model.weights');
    assert.equal(weights.manifest.architecture.name, 'unet');
    await access(path.join(out, 'checkpoints'));
  });

  it('evaluates per subject on held-out cases with BraTS metrics', async () => {
    const run = await fedsynth('eval-seg', '--model', path.join(tmp, 'unet'), '--data', heldOutDir, '--json');
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout);
    assert.equal(report.summary.subjects, 2);
    assert.deepEqual(report.perSubject.map((s: { subject: string }) => s.subject).sort(), [
      'BraTS-GLI-00000-000',
      'BraTS-GLI-00001-000',
    ]);
    for (const subject of report.perSubject) {
      for (const key of ['WT', 'TC', 'ETr']) {
        const m = subject.regions[key];
        assert.ok(m.dice >= 0 && m.dice <= 1, `${key} dice ${m.dice}`);
        assert.ok(m.hd95 >= 0, `${key} hd95 ${m.hd95}`);
        assert.ok(m.truthVoxels > 0, 'phantom subjects have tumours');
      }
    }
    const table = await fedsynth('eval-seg', '--model', path.join(tmp, 'unet'), '--data', heldOutDir);
    assert.match(table.stdout, /WT\s+\d\.\d{3}/);
  });

  it('refuses slices of the wrong size for the profile, naming the store', async () => {
    const store = path.join(tmp, 'wrong.fss');
    await buildSliceStore({ dataDir: trainDir, out: store, preset: 'cpu64' });
    const run = await fedsynth(
      'train-seg',
      '--data',
      store,
      '--out',
      path.join(tmp, 'x'),
      '--profile',
      'tiny',
      '--steps',
      '2',
      '--workers',
      '1',
    );
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /wrong\.fss: slices are 64² but the unet profile expects 32²/);
  });
});
