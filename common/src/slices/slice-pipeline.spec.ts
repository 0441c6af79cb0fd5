import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { readNifti } from '../nifti/index.js';
import { writePhantomSites } from '../phantom/index.js';
import { decodeAnnotation } from './presets.js';
import { buildSliceStore } from './slice-pipeline.js';
import { exportSliceStoreNifti } from './slice-nifti-export.js';
import { SliceStoreReader } from './slice-store.js';

const run = promisify(execFile);

describe('buildSliceStore on phantom sites', () => {
  let root: string;
  let siteDir: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-pipeline-'));
    const manifest = await writePhantomSites({
      out: path.join(root, 'data'),
      sites: 1,
      cases: 5,
      seed: 11,
      naming: '2021',
      dims: [64, 64, 40],
    });
    siteDir = manifest.sites[0]!.dir;
    // Break one case: its FLAIR is no longer NIfTI. The others must still be sliced.
    const broken = manifest.sites[0]!.cases[2]!;
    await writeFile(path.join(siteDir, broken, `${broken}_flair.nii.gz`), 'garbage');
  });
  after(async () => rm(root, { recursive: true, force: true }));

  it('slices every good case, skips the broken one with its file and reason, and splits by subject', async () => {
    const out = path.join(root, 'site.fss');
    const progress: number[] = [];
    const summary = await buildSliceStore({
      dataDir: siteDir,
      out,
      preset: 'cpu32',
      testFraction: 0.25,
      seed: 3,
      onProgress: (e) => progress.push(e.done),
    });
    assert.deepEqual(progress, [1, 2, 3, 4, 5]);
    assert.equal(summary.casesFound, 5);
    assert.equal(summary.casesSliced, 4);
    assert.equal(summary.skipped.length, 1);
    assert.match(summary.skipped[0]!.file!, /_flair\.nii\.gz$/);
    assert.ok(summary.slices > 0);
    assert.equal(summary.trainSubjects + summary.testSubjects, 4);
    assert.ok(summary.testSubjects >= 1);

    const store = await SliceStoreReader.open(out);
    try {
      assert.equal(store.count, summary.slices);
      assert.equal(store.meta.size, 32);
      const all = await store.readRange(0, store.count);
      const seen = new Set<number>();
      for (let i = 4; i < all.length; i += 5) seen.add(all[i]!);
      assert.ok(
        [...seen].every((v) => [0, 51, 102, 204].includes(v)),
        `annotation bytes ${[...seen]}`,
      );
      assert.ok(
        [...seen].some((v) => decodeAnnotation(v) === 3),
        'phantom tumours have enhancing tumour',
      );
      for (const s of store.meta.subjects) {
        assert.deepEqual(s.sourceDims, [64, 64, 40]);
        assert.ok(
          s.z.every((z, i) => i === 0 || z > s.z[i - 1]!),
          'slices in axial order',
        );
      }
    } finally {
      await store.close();
    }
  });

  it('a NIfTI export into a missing folder fails with the path, leaving nothing behind', async () => {
    const out = path.join(root, 'for-export.fss');
    await buildSliceStore({ dataDir: siteDir, out, preset: 'cpu32', seed: 1 });
    const target = path.join(root, 'no-such-folder', 'x.nii.gz');
    await assert.rejects(exportSliceStoreNifti(out, target), /no-such-folder/);
    await assert.rejects(access(`${target}.partial`));
  });

  it('exports a 4-D NIfTI [W, H, N, 5] that our reader and nibabel read back to the same voxels', async () => {
    const out = path.join(root, 'export.fss');
    await buildSliceStore({ dataDir: siteDir, out, preset: 'cpu32', seed: 1 });
    const niftiFile = path.join(root, 'export.nii.gz');
    await exportSliceStoreNifti(out, niftiFile);
    const store = await SliceStoreReader.open(out);
    const slices = await store.readRange(0, store.count);
    await store.close();
    const vol = await readNifti(niftiFile);
    const n = store.count;
    assert.deepEqual(vol.header.dims, [32, 32, n, 5]);
    assert.equal(vol.header.datatype, 'uint8');
    // voxel (x, y, k, c) == slice k, row y, column x, channel c
    for (const [x, y, k, c] of [
      [0, 0, 0, 0],
      [16, 16, 0, 4],
      [10, 20, n - 1, 2],
      [31, 5, Math.floor(n / 2), 3],
    ] as const) {
      assert.equal(vol.data[((c * n + k) * 32 + y) * 32 + x], slices[((k * 32 + y) * 32 + x) * 5 + c]);
    }
    const { stdout } = await run('/usr/bin/python3', [
      '-c',
      'import sys, nibabel as nib, numpy as np; a = np.asarray(nib.load(sys.argv[1]).dataobj); print(a.shape, a.dtype, int(a.astype(np.int64).sum()))',
      niftiFile,
    ]);
    let sum = 0;
    for (const v of slices) sum += v;
    assert.equal(stdout.trim(), `(32, 32, ${n}, 5) uint8 ${sum}`);
  });
});
