// A release built from phantom-derived slice stores, checked with independent tools: nibabel reads every NIfTI
// (labels decoded to BraTS 2023 values), `sha256sum -c` verifies the manifest, `tar` lists and extracts the
// streamed archive; withheld candidates are absent everywhere.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { writePhantomSites } from '../phantom/index.js';
import { buildSliceStore } from '../slices/slice-pipeline.js';
import { SliceStoreReader } from '../slices/slice-store.js';
import { buildRelease, removeReleaseFolder, type ReleaseSummary } from './release-builder.js';
import { parseManifest, ReleaseIntegrityError, verifyRelease } from './release-manifest.js';
import { releaseTarStream } from './release-tar.js';
import { buildReleaseInWorker } from './run-release-worker.js';

const run = promisify(execFile);
const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** nibabel's view of a file: shape, dtype, sha256 of the voxels (x fastest) and the distinct values. */
const NIBABEL = `
import hashlib, json, sys
import nibabel as nib, numpy as np
out = []
for f in sys.argv[1:]:
    img = nib.load(f)
    a = np.asanyarray(img.dataobj)
    out.append({'shape': list(a.shape), 'dtype': a.dtype.name, 'zooms': [float(z) for z in img.header.get_zooms()],
                'sha256': hashlib.sha256(a.astype('<u1').tobytes(order='F')).hexdigest(),
                'values': sorted(int(v) for v in np.unique(a))})
print(json.dumps(out))
`;

async function nibabel(files: string[]) {
  const { stdout } = await run('/usr/bin/python3', ['-c', NIBABEL, ...files], { maxBuffer: 64 << 20 });
  return JSON.parse(stdout) as Array<{
    shape: number[];
    dtype: string;
    zooms: number[];
    sha256: string;
    values: number[];
  }>;
}

/** The test's own decoding of the annotation byte (nearest of 0/51/102/204 → 0/1/2/3). */
const label = (v: number) => (v > 153 ? 3 : v > 76.5 ? 2 : v > 25.5 ? 1 : 0);

describe('release builder', () => {
  let root: string;
  let stores: string[];
  let candidates: Uint8Array[]; // every candidate slice, in candidate order
  let summary: ReleaseSummary;
  let withheld: number[];
  const size = 32;
  const C = 5;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-release-'));
    const manifest = await writePhantomSites({
      out: path.join(root, 'data'),
      sites: 2,
      cases: 4,
      seed: 7,
      naming: '2023',
      dims: [64, 64, 40],
      siteSizes: [2, 2],
    });
    stores = [];
    candidates = [];
    for (const site of manifest.sites) {
      const out = path.join(root, `${path.basename(site.dir)}.fss`);
      await buildSliceStore({ dataDir: site.dir, out, preset: 'cpu32', testFraction: 0, seed: 1 });
      stores.push(out);
      const reader = await SliceStoreReader.open(out);
      const all = await reader.readRange(0, reader.count);
      for (let i = 0; i < reader.count; i++)
        candidates.push(all.slice(i * size * size * C, (i + 1) * size * size * C));
      await reader.close();
    }
    assert.ok(candidates.length >= 6, `enough candidates (${candidates.length})`);
    withheld = [1, candidates.length - 2];
    summary = await buildRelease({
      out: path.join(root, 'release'),
      sources: stores.map((store, i) => ({
        store,
        site: `site-${i + 1}`,
        generator: 'stylegan2/tiny',
        job: `job-${i}`,
        seed: 10 + i,
      })),
      withheld,
      facts: {
        title: 'fedsynth test release',
        version: 1,
        study: { id: 'study-abc' },
        createdAt: '2030-01-01T00:00:00.000Z',
        audit: {
          id: 'audit-1',
          margin: 0.02,
          candidates: candidates.length,
          withheld: 2,
          sites: [{ site: 'site-1', threshold: 0.9, flagged: 1 }],
        },
        evaluation: [
          { label: 'unet/synthetic', dice: { WT: 0.8, TC: 0.7, ET: 0.6, NCR: null, ED: 0.5 }, subjects: 4 },
        ],
      },
      casePrefix: 'FEDSYNTH-studyabc',
      nnunetDatasetId: 7,
      previewRows: 4,
    });
  });
  // release folders are read-only (0555): removeReleaseFolder opens them up first
  after(async () => removeReleaseFolder(root));

  it('releases every candidate but the withheld ones, with provenance per sample', async () => {
    assert.equal(summary.candidates, candidates.length);
    assert.equal(summary.samples, candidates.length - 2);
    const rows = (await readFile(path.join(summary.folder, 'provenance.csv'), 'utf8'))
      .trim()
      .split('\n')
      .slice(1);
    assert.equal(rows.length, summary.samples);
    const released = rows.map((r) => Number(r.split(',')[1]));
    assert.deepEqual(
      released,
      candidates.map((_, i) => i).filter((i) => !withheld.includes(i)),
    );
    const card = JSON.parse(await readFile(path.join(summary.folder, 'card.json'), 'utf8'));
    assert.equal(card.samples, summary.samples);
    assert.equal(card.withheld, 2);
    const firstStore = await SliceStoreReader.open(stores[0]!);
    const inFirst = firstStore.count;
    await firstStore.close();
    const inFirstReleased = released.filter((i) => i < inFirst).length;
    assert.deepEqual(card.sites, [
      { site: 'site-1', samples: inFirstReleased },
      { site: 'site-2', samples: summary.samples - inFirstReleased },
    ]);
    assert.match(card.intendedUse, /NOT for clinical use/);
    const readme = await readFile(path.join(summary.folder, 'README.md'), 'utf8');
    assert.match(readme, /not for clinical use/i);
    assert.match(readme, /\| unet\/synthetic \| 4 \| 0\.800 \|/);
  });

  it('writes BraTS-named NIfTI that nibabel reads, with the pixels and labels of the candidates', async () => {
    const rows = (await readFile(path.join(summary.folder, 'provenance.csv'), 'utf8'))
      .trim()
      .split('\n')
      .slice(1);
    const cases = await readdir(path.join(summary.folder, 'samples'));
    assert.equal(cases.length, summary.samples);
    const seen = new Set<number>();
    for (const row of [rows[0]!, rows[rows.length - 1]!]) {
      const [caseId, cand] = row.split(',');
      const slice = candidates[Number(cand)]!;
      const suffixes = ['t1n', 't1c', 't2w', 't2f', 'seg'];
      const files = suffixes.map((s) =>
        path.join(summary.folder, 'samples', caseId!, `${caseId}-${s}.nii.gz`),
      );
      const described = await nibabel(files);
      const channelOf = { t1n: 0, t2w: 1, t2f: 2, t1c: 3, seg: 4 } as Record<string, number>;
      described.forEach((d, i) => {
        const s = suffixes[i]!;
        assert.deepEqual(d.shape, [size, size, 1], `${s} shape`);
        assert.equal(d.dtype, 'uint8');
        assert.deepEqual(d.zooms, [8, 8, 1], `${s} spacing: 256/32 mm`);
        const plane = new Uint8Array(size * size);
        for (let p = 0; p < plane.length; p++) {
          const v = slice[p * C + channelOf[s]!]!;
          plane[p] = s === 'seg' ? label(v) : v;
        }
        assert.equal(d.sha256, sha(plane), `${caseId} ${s} voxels`);
        if (s === 'seg') {
          assert.ok(
            d.values.every((v) => [0, 1, 2, 3].includes(v)),
            `labels ${d.values}`,
          );
          d.values.forEach((v) => seen.add(v));
        }
      });
    }
    // over the whole release the phantom tumours give every label
    const allSegs = cases.map((c) => path.join(summary.folder, 'samples', c, `${c}-seg.nii.gz`));
    const values = new Set((await nibabel(allSegs)).flatMap((d) => d.values));
    assert.deepEqual([...values].sort(), [0, 1, 2, 3]);
  });

  it('writes the nnU-Net v2 raw layout with a dataset.json nnU-Net understands', async () => {
    const dir = path.join(summary.folder, 'nnUNet_raw', 'Dataset007_fedsynth');
    const dataset = JSON.parse(await readFile(path.join(dir, 'dataset.json'), 'utf8'));
    assert.deepEqual(dataset.channel_names, { 0: 'T1', 1: 'T1ce', 2: 'T2', 3: 'FLAIR' });
    assert.deepEqual(dataset.labels, { background: 0, NCR: 1, ED: 2, ET: 3 });
    assert.equal(dataset.numTraining, summary.samples);
    assert.equal(dataset.file_ending, '.nii.gz');
    const images = (await readdir(path.join(dir, 'imagesTr'))).sort();
    const labels = (await readdir(path.join(dir, 'labelsTr'))).sort();
    assert.equal(labels.length, summary.samples);
    assert.equal(images.length, 4 * summary.samples);
    for (const l of labels) {
      const id = l.replace(/\.nii\.gz$/, '');
      for (const ch of ['0000', '0001', '0002', '0003'])
        assert.ok(images.includes(`${id}_${ch}.nii.gz`), `${id}_${ch}`);
    }
    const [img, sample] = await nibabel([
      path.join(dir, 'imagesTr', images[1]!),
      path.join(
        summary.folder,
        'samples',
        labels[0]!.replace(/\.nii\.gz$/, ''),
        `${labels[0]!.replace(/\.nii\.gz$/, '')}-t1c.nii.gz`,
      ),
    ]);
    assert.equal(img!.sha256, sample!.sha256, '_0001 is T1ce');
  });

  it('writes PNG previews and a manifest that sha256sum -c verifies; files are read-only', async () => {
    const previews = await readdir(path.join(summary.folder, 'previews'));
    assert.equal(previews.length, Math.ceil(summary.samples / 4));
    const png = await readFile(path.join(summary.folder, 'previews', previews[0]!));
    assert.deepEqual([...png.subarray(1, 4)], [...Buffer.from('PNG')]);
    const { stdout } = await run('sha256sum', ['-c', 'MANIFEST.sha256'], {
      cwd: summary.folder,
      maxBuffer: 16 << 20,
    });
    const ok = stdout.trim().split('\n');
    assert.ok(ok.every((l) => l.endsWith(': OK')));
    const listed = parseManifest(await readFile(path.join(summary.folder, 'MANIFEST.sha256'), 'utf8'));
    assert.deepEqual([...listed.keys()].sort(), summary.files.filter((f) => f !== 'MANIFEST.sha256').sort());
    assert.equal(ok.length, summary.files.length - 1);
    const mode = (await stat(path.join(summary.folder, 'card.json'))).mode & 0o777;
    assert.equal(mode & 0o222, 0, 'no write bit');
  });

  it('leaves the withheld candidates out: no released image equals one', async () => {
    const withheldT1 = new Set(
      withheld.map((i) => {
        const plane = new Uint8Array(size * size);
        for (let p = 0; p < plane.length; p++) plane[p] = candidates[i]![p * C]!;
        return sha(plane);
      }),
    );
    const cases = await readdir(path.join(summary.folder, 'samples'));
    const described = await nibabel(
      cases.map((c) => path.join(summary.folder, 'samples', c, `${c}-t1n.nii.gz`)),
    );
    for (const d of described) assert.ok(!withheldT1.has(d.sha256), 'a withheld candidate was released');
  });

  it('streams the folder as a tar that tar lists and extracts to a verifying copy', async () => {
    const tarFile = path.join(root, 'release.tar');
    await pipeline(
      releaseTarStream(summary.folder, {
        prefix: 'fedsynth-release-v1',
        mtime: new Date('2030-01-01T00:00:00Z'),
      }),
      createWriteStream(tarFile),
    );
    const { stdout } = await run('tar', ['-tf', tarFile], { maxBuffer: 16 << 20 });
    const members = stdout
      .trim()
      .split('\n')
      .filter((m) => !m.endsWith('/'));
    assert.deepEqual(members.sort(), summary.files.map((f) => `fedsynth-release-v1/${f}`).sort());
    const x = path.join(root, 'x');
    await mkdir(x);
    await run('tar', ['-xf', tarFile, '-C', x]);
    await run('sha256sum', ['-c', '--quiet', 'MANIFEST.sha256'], {
      cwd: path.join(x, 'fedsynth-release-v1'),
    });
  });

  it('builds the same release in a worker thread; folders end read-only; a changed or missing file is caught', async () => {
    const options = {
      out: path.join(root, 'w'),
      sources: stores.map((store, i) => ({ store, site: `site-${i + 1}`, generator: 'stylegan2/tiny' })),
      withheld: [0],
      facts: { title: 't', study: { id: 's' }, createdAt: '2030-01-01T00:00:00.000Z' },
      casePrefix: 'W',
    };
    const inWorker = await buildReleaseInWorker(options);
    await removeReleaseFolder(path.join(root, 'm'));
    const inProcess = await buildRelease({ ...options, out: path.join(root, 'm') });
    assert.equal(inWorker.manifestSha256, inProcess.manifestSha256, 'same bytes either way');
    for (const dir of ['', 'samples', 'previews', 'nnUNet_raw'])
      assert.equal((await stat(path.join(inWorker.folder, dir))).mode & 0o777, 0o555, `${dir || '.'} mode`);
    await assert.rejects(buildReleaseInWorker(options), /exists already/, 'errors come back from the worker');

    const checked = await verifyRelease(inWorker.folder, inWorker.manifestSha256);
    assert.deepEqual(checked.files, [
      ...inWorker.files.filter((f) => f !== 'MANIFEST.sha256'),
      'MANIFEST.sha256',
    ]);
    await assert.rejects(verifyRelease(inWorker.folder, 'f'.repeat(64)), /MANIFEST.sha256 was changed/);

    // changed after the check: the tar stream hashes as it sends and fails before the archive is complete
    const victim = inWorker.files.find((f) => f.endsWith('-seg.nii.gz'))!;
    const victimFile = path.join(inWorker.folder, ...victim.split('/'));
    await chmod(path.dirname(victimFile), 0o755);
    await chmod(victimFile, 0o644);
    const bytes = await readFile(victimFile);
    bytes[10] ^= 0xff;
    await writeFile(victimFile, bytes);
    const chunks: Buffer[] = [];
    await assert.rejects(
      pipeline(
        releaseTarStream(inWorker.folder, { prefix: 'w', files: checked.files, sha256: checked.sha256 }),
        async (source: AsyncIterable<Buffer>) => {
          for await (const chunk of source) chunks.push(chunk);
        },
      ),
      (error: Error) => error instanceof ReleaseIntegrityError && error.message.includes(`${victim} changed`),
    );
    await assert.rejects(
      verifyRelease(inWorker.folder, inWorker.manifestSha256),
      new RegExp(`${victim.replace(/[.]/g, '\\.')} does not match its sha256`),
    );
    await removeReleaseFolder(victimFile);
    await assert.rejects(verifyRelease(inWorker.folder), (error: Error) =>
      error.message.includes(`${victim} is missing`),
    );
  });

  it('refuses an existing folder and withheld indices outside the pool, leaving nothing behind', async () => {
    const sources = [{ store: stores[0]!, site: 's', generator: 'g' }];
    const facts = { title: 't', study: { id: 's' }, createdAt: '2030-01-01T00:00:00.000Z' };
    await assert.rejects(
      buildRelease({ out: summary.folder, sources, withheld: [], facts, casePrefix: 'X' }),
      /exists already/,
    );
    const out = path.join(root, 'bad');
    await assert.rejects(
      buildRelease({ out, sources, withheld: [9999], facts, casePrefix: 'X' }),
      /withheld candidate 9999/,
    );
    assert.deepEqual(
      (await readdir(root)).filter((f) => f.startsWith('bad')),
      [],
    );
  });
});
