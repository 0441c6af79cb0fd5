import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { readNifti } from '../nifti/index.js';
import {
  bratsFileSuffixes,
  generatePhantomCase,
  generatePhantomCaseWithTissue,
  phantomCaseId,
  phantomCaseSeed,
  phantomSiteSizes,
  Tissue,
  writePhantomSites,
  type BratsNaming,
  type PhantomCaseWithTissue,
  type PhantomManifestFile,
} from './index.js';

const DIMS: [number, number, number] = [64, 64, 40];
const SEEDS = [1, 2, 3, 4, 5];
const SEQUENCES = ['t1', 't1ce', 't2', 'flair'] as const;

function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function meanOver(image: Int16Array, tissue: Uint8Array, tissueClass: number): number {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < image.length; i++) {
    if (tissue[i] === tissueClass) {
      sum += image[i];
      count++;
    }
  }
  assert.ok(count > 0, `no voxels of tissue class ${tissueClass}`);
  return sum / count;
}

/** Mean over voxels of a class none of whose six neighbours is CSF or background (no partial volume with them). */
function meanAwayFromCsf(image: Int16Array, tissue: Uint8Array, tissueClass: number): number {
  const [nx, ny] = DIMS;
  const steps = [1, -1, nx, -nx, nx * ny, -nx * ny];
  let sum = 0;
  let count = 0;
  for (let i = nx * ny; i < tissue.length - nx * ny; i++) {
    if (tissue[i] !== tissueClass) continue;
    if (steps.some((step) => tissue[i + step] === Tissue.Csf || tissue[i + step] === Tissue.Background))
      continue;
    sum += image[i];
    count++;
  }
  assert.ok(count > 0, `no interior voxels of tissue class ${tissueClass}`);
  return sum / count;
}

describe('generatePhantomCase', () => {
  const cases = new Map<number, PhantomCaseWithTissue>();
  before(() => {
    for (const seed of SEEDS) {
      cases.set(
        seed,
        generatePhantomCaseWithTissue({ seed, id: `case-${seed}`, naming: '2023', dims: DIMS }),
      );
    }
  });

  it('is deterministic for a seed and differs between seeds', () => {
    const again = generatePhantomCase({ seed: 1, id: 'again', naming: '2023', dims: DIMS });
    const first = cases.get(1)!;
    for (const key of [...SEQUENCES, 'seg'] as const) assert.ok(sameBytes(first[key], again[key]), key);
    const other = cases.get(2)!;
    for (const key of SEQUENCES) assert.ok(!sameBytes(first[key], other[key]), key);
  });

  it('returns the requested id and dims, int16 images and a uint8 segmentation of the full grid', () => {
    const volumes = cases.get(1)!;
    assert.equal(volumes.id, 'case-1');
    assert.deepEqual(volumes.dims, DIMS);
    const voxels = DIMS[0] * DIMS[1] * DIMS[2];
    for (const key of SEQUENCES) {
      assert.ok(volumes[key] instanceof Int16Array);
      assert.equal(volumes[key].length, voxels);
    }
    assert.ok(volumes.seg instanceof Uint8Array);
    assert.equal(volumes.seg.length, voxels);
  });

  it('uses only the naming scheme labels, with oedema and enhancing tumour in every case', () => {
    let withNecrosis = 0;
    for (const volumes of cases.values()) {
      const present = new Set(volumes.seg);
      for (const label of present) assert.ok([0, 1, 2, 3].includes(label), `label ${label}`);
      assert.ok(present.has(2) && present.has(3), `labels ${[...present]}`);
      if (present.has(1)) withNecrosis++;
    }
    // The necrotic core is absent by design in about one case in six, so ask for most cases, not all.
    assert.ok(withNecrosis >= 3, `necrosis in ${withNecrosis} of ${SEEDS.length} cases`);

    const older = generatePhantomCase({ seed: 1, id: 'x', naming: '2021', dims: DIMS });
    const newer = cases.get(1)!;
    for (let i = 0; i < older.seg.length; i++) {
      assert.equal(older.seg[i], newer.seg[i] === 3 ? 4 : newer.seg[i]);
    }
    for (const key of SEQUENCES) assert.ok(sameBytes(older[key], newer[key]), 'naming changes labels only');
  });

  it('labels exactly the tumour classes, all inside the brain', () => {
    const expected: Record<number, number> = {
      [Tissue.Necrosis]: 1,
      [Tissue.Edema]: 2,
      [Tissue.Enhancing]: 3,
    };
    for (const { seg, tissue } of cases.values()) {
      for (let i = 0; i < seg.length; i++) {
        assert.equal(seg[i], expected[tissue[i]] ?? 0);
        if (seg[i] !== 0) assert.notEqual(tissue[i], Tissue.Background);
      }
    }
  });

  it('makes every image non-zero exactly on the brain mask', () => {
    for (const volumes of cases.values()) {
      let brainVoxels = 0;
      for (let i = 0; i < volumes.tissue.length; i++) {
        const inBrain = volumes.tissue[i] !== Tissue.Background;
        if (inBrain) brainVoxels++;
        for (const key of SEQUENCES) {
          if (volumes[key][i] > 0 !== inBrain) assert.fail(`${key} voxel ${i} disagrees with the brain mask`);
        }
      }
      const fraction = brainVoxels / volumes.tissue.length;
      assert.ok(fraction > 0.1 && fraction < 0.5, `brain fraction ${fraction}`);
    }
  });

  it('has every normal tissue class', () => {
    for (const { tissue } of cases.values()) {
      const present = new Set(tissue);
      for (const tissueClass of [Tissue.Csf, Tissue.GreyMatter, Tissue.WhiteMatter]) {
        assert.ok(present.has(tissueClass), `tissue ${tissueClass} missing`);
      }
    }
  });

  it('has the textbook MRI contrasts', () => {
    const { Csf, GreyMatter, WhiteMatter, Necrosis, Edema, Enhancing } = Tissue;
    for (const [seed, v] of cases) {
      const mean = (image: Int16Array, tissueClass: number) => meanOver(image, v.tissue, tissueClass);
      const label = `seed ${seed}`;
      assert.ok(mean(v.t1, WhiteMatter) > mean(v.t1, GreyMatter), label);
      assert.ok(mean(v.t1, GreyMatter) > mean(v.t1, Csf), label);
      assert.ok(mean(v.t1, Edema) < mean(v.t1, WhiteMatter), label);
      assert.ok(mean(v.t1ce, Enhancing) > mean(v.t1, Enhancing), label);
      assert.ok(mean(v.t1ce, Enhancing) > mean(v.t1ce, WhiteMatter), label);
      assert.ok(mean(v.t2, Csf) > mean(v.t2, WhiteMatter), label);
      assert.ok(mean(v.t2, Edema) > mean(v.t2, WhiteMatter), label);
      assert.ok(mean(v.flair, Csf) < mean(v.flair, WhiteMatter), label);
      assert.ok(mean(v.flair, Edema) > mean(v.flair, WhiteMatter), label);
      // Grey matter is thin on a 64 x 64 x 40 grid and shares voxels with dark CSF, so compare its interior.
      const flairGrey = meanAwayFromCsf(v.flair, v.tissue, GreyMatter);
      assert.ok(flairGrey > meanAwayFromCsf(v.flair, v.tissue, WhiteMatter), label);
      if (v.tissue.includes(Necrosis)) {
        assert.ok(mean(v.t1, Necrosis) < mean(v.t1, WhiteMatter), label);
        assert.ok(mean(v.t2, Necrosis) > mean(v.t2, WhiteMatter), label);
      }
    }
  });

  it('refuses bad dims and namings', () => {
    assert.throws(
      () => generatePhantomCase({ seed: 1, id: 'x', naming: '2023', dims: [10, 64, 40] }),
      /dims must be three integers/,
    );
    assert.throws(
      () => generatePhantomCase({ seed: 1, id: 'x', naming: '2019' as BratsNaming, dims: DIMS }),
      /naming must be one of/,
    );
  });
});

describe('phantomSiteSizes', () => {
  it('splits unequally, at least one case per site, largest first, deterministically', () => {
    for (const [sites, cases] of [
      [3, 12],
      [4, 5],
      [2, 40],
      [5, 5],
      [1, 3],
    ]) {
      const sizes = phantomSiteSizes({ sites, cases, seed: 7 });
      assert.equal(sizes.length, sites);
      assert.equal(
        sizes.reduce((sum, n) => sum + n, 0),
        cases,
      );
      assert.ok(
        sizes.every((n, i) => n >= 1 && (i === 0 || n <= sizes[i - 1])),
        `${sizes}`,
      );
      if (cases > sites && sites > 1) assert.ok(sizes[0] > sizes[sites - 1], `equal split ${sizes}`);
      assert.deepEqual(phantomSiteSizes({ sites, cases, seed: 7 }), sizes);
    }
  });

  it('keeps explicit sizes and rejects bad options clearly', () => {
    assert.deepEqual(phantomSiteSizes({ sites: 2, cases: 5, seed: 1, siteSizes: [1, 4] }), [1, 4]);
    assert.throws(
      () => phantomSiteSizes({ sites: 4, cases: 3, seed: 1 }),
      /at least one case per site: 3 cases for 4/,
    );
    assert.throws(
      () => phantomSiteSizes({ sites: 2, cases: 5, seed: 1, siteSizes: [2, 2] }),
      /sum to 4, not to cases = 5/,
    );
    assert.throws(
      () => phantomSiteSizes({ sites: 2, cases: 5, seed: 1, siteSizes: [5] }),
      /1 entries for 2 sites/,
    );
    assert.throws(
      () => phantomSiteSizes({ sites: 2, cases: 5, seed: 1, siteSizes: [5, 0] }),
      /siteSizes\[1\]/,
    );
    assert.throws(() => phantomSiteSizes({ sites: 0, cases: 5, seed: 1 }), /sites must be an integer >= 1/);
  });
});

describe('phantomCaseId', () => {
  it('follows each BraTS naming', () => {
    assert.equal(phantomCaseId('2023', 7), 'BraTS-GLI-00007-000');
    assert.equal(phantomCaseId('2021', 7), 'BraTS2021_00007');
    assert.equal(phantomCaseId('2020', 7), 'BraTS20_Training_008');
  });
});

describe('writePhantomSites', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'fedsynth-phantom-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  for (const naming of ['2021', '2023'] as const) {
    it(`writes the BraTS ${naming} layout, unequal sites, files that read back`, async () => {
      const out = path.join(root, `layout-${naming}`);
      const progress: { done: number; total: number; caseId: string; site: string }[] = [];
      const manifest = await writePhantomSites({
        out,
        sites: 3,
        cases: 7,
        seed: 11,
        naming,
        dims: DIMS,
        onProgress: (e) => progress.push(e),
      });

      const sizes = manifest.sites.map((site) => site.cases.length);
      assert.equal(
        sizes.reduce((sum, n) => sum + n, 0),
        7,
      );
      assert.ok(sizes[0] > sizes[2], `sizes ${sizes}`);
      assert.deepEqual(
        manifest.sites.map((site) => [site.name, site.dir]),
        [
          ['site-1', path.join(out, 'site-1')],
          ['site-2', path.join(out, 'site-2')],
          ['site-3', path.join(out, 'site-3')],
        ],
      );
      const ids = manifest.sites.flatMap((site) => site.cases);
      assert.deepEqual(
        ids,
        Array.from({ length: 7 }, (_, i) => phantomCaseId(naming, i)),
      );
      assert.deepEqual(
        progress.map((e) => e.done),
        [1, 2, 3, 4, 5, 6, 7],
      );
      assert.ok(progress.every((e) => e.total === 7));

      const written = JSON.parse(
        await readFile(path.join(out, 'phantom.json'), 'utf8'),
      ) as PhantomManifestFile;
      assert.equal(written.synthetic, true);
      assert.equal(written.generator, 'fedsynth-phantom');
      assert.equal(typeof written.generatorVersion, 'number');
      assert.deepEqual(
        { seed: written.seed, naming: written.naming, dims: written.dims, sites: written.sites },
        {
          ...manifest,
          sites: manifest.sites.map((site) => ({ ...site, dir: path.relative(out, site.dir) })),
        },
        'phantom.json keeps folders relative, so the data can be moved',
      );

      const suffixes = bratsFileSuffixes(naming);
      for (const site of manifest.sites) {
        assert.deepEqual((await readdir(site.dir)).sort(), [...site.cases].sort());
        for (const caseId of site.cases) {
          const files = (await readdir(path.join(site.dir, caseId))).sort();
          assert.deepEqual(
            files,
            Object.values(suffixes)
              .map((suffix) => `${caseId}${suffix}.nii.gz`)
              .sort(),
          );
        }
      }

      // The last case of the last site, read back voxel for voxel.
      const site = manifest.sites[2];
      const caseId = site.cases[site.cases.length - 1];
      const expected = generatePhantomCase({ seed: phantomCaseSeed(11, 6), id: caseId, naming, dims: DIMS });
      for (const key of [...SEQUENCES, 'seg'] as const) {
        const volume = await readNifti(path.join(site.dir, caseId, `${caseId}${suffixes[key]}.nii.gz`));
        assert.deepEqual(volume.header.dims, DIMS);
        assert.equal(volume.header.datatype, key === 'seg' ? 'uint8' : 'int16');
        assert.deepEqual(volume.header.pixdim.slice(0, 3), [1, 1, 1]);
        assert.equal(volume.header.sformCode, 1);
        assert.equal(volume.header.qformCode, 1);
        assert.deepEqual(volume.header.affine, [
          [-1, 0, 0, 0],
          [0, -1, 0, DIMS[1] - 1],
          [0, 0, 1, 0],
          [0, 0, 0, 1],
        ]);
        assert.ok(sameBytes(volume.data, expected[key]), `${key} differs from the generated case`);
      }
    });
  }

  it('writes byte-identical files for a seed, whatever the site split', async () => {
    const options = { sites: 2, cases: 3, seed: 5, naming: '2023' as const, dims: DIMS };
    const first = await writePhantomSites({ ...options, out: path.join(root, 'same-a') });
    const second = await writePhantomSites({ ...options, out: path.join(root, 'same-b'), siteSizes: [1, 2] });
    const locate = (manifest: typeof first, caseId: string) => {
      const site = manifest.sites.find((s) => s.cases.includes(caseId))!;
      return path.join(site.dir, caseId, `${caseId}-t2f.nii.gz`);
    };
    for (const caseId of first.sites.flatMap((s) => s.cases)) {
      const a = await readFile(locate(first, caseId));
      const b = await readFile(locate(second, caseId));
      assert.ok(a.equals(b), `${caseId} differs between runs`);
    }
  });

  it('rejects bad options before writing anything', async () => {
    const out = path.join(root, 'rejected');
    const base = { out, seed: 1, naming: '2023' as const, dims: DIMS };
    await assert.rejects(writePhantomSites({ ...base, sites: 3, cases: 2 }), /at least one case per site/);
    await assert.rejects(writePhantomSites({ ...base, sites: 2, cases: 4, siteSizes: [1, 2] }), /sum to 3/);
    await assert.rejects(writePhantomSites({ ...base, sites: 1, cases: 1, gzipLevel: 12 }), /gzipLevel/);
    await assert.rejects(
      writePhantomSites({ ...base, sites: 1, cases: 1, seed: 1.5 }),
      /seed must be an integer/,
    );
    assert.equal(existsSync(out), false);
  });
});
