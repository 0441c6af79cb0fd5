import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { discoverBratsCases } from '../brats/case-discovery.js';
import { loadCase, type LoadedCase } from '../brats/case-loader.js';
import { repoRoot, sharedDataFile } from '../testing/paths.js';
import { writeTinyCase } from '../testing/tiny-case.js';
import { decodeAnnotation, SLICE_PRESETS } from './presets.js';
import { sliceCase } from './slicer.js';

const run = promisify(execFile);
const C = 5;

async function loadTiny(
  root: string,
  spec: Omit<Parameters<typeof writeTinyCase>[0], 'dir'>,
): Promise<LoadedCase> {
  const dir = path.join(root, spec.id);
  await writeTinyCase({ ...spec, dir });
  const { cases } = await discoverBratsCases(dir);
  return loadCase(cases[0]!);
}

const pixel = (data: Uint8Array, size: number, n: number, x: number, y: number, c: number) =>
  data[((n * size + y) * size + x) * C + c]!;

describe('sliceCase, paper preset, on hand-made volumes', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-slicer-'));
  });
  after(async () => rm(root, { recursive: true, force: true }));

  it('pads 240x240 by 8 px, scales by the volume max and keeps only slices > 15 % bright', async () => {
    const dims: [number, number, number] = [240, 240, 3];
    const plane = 240 * 240;
    const t1 = new Int16Array(plane * 3);
    // z = 0: exactly 15 % of 256² pixels (9830) bright -> dropped; z = 1: 9831 bright -> kept; z = 2: all dark.
    // Bright = 1000 (max, -> 255); dark = 100 (-> 25.5 -> 26, under the 50 threshold).
    t1.fill(100);
    for (let i = 0; i < 9830; i++) t1[i] = 1000;
    for (let i = 0; i < 9831; i++) t1[plane + i] = 1000;
    const seg = new Uint8Array(plane * 3);
    seg[plane + 0] = 1;
    seg[plane + 1] = 2;
    seg[plane + 2] = 4;
    const loaded = await loadTiny(root, { id: 'BraTS2021_00001', dims, images: { t1 }, seg });
    const out = sliceCase(loaded, SLICE_PRESETS.paper, 'max');
    assert.deepEqual(out.z, [1]);
    assert.equal(out.data.length, 256 * 256 * C);
    assert.equal(pixel(out.data, 256, 0, 8, 8, 0), 255, 'source (0,0) lands at canvas (8,8)');
    assert.equal(pixel(out.data, 256, 0, 7, 8, 0), 0, 'padding is zero');
    assert.equal(pixel(out.data, 256, 0, 8, 7, 0), 0);
    assert.equal(
      pixel(out.data, 256, 0, 247, 247, 0),
      26,
      '100 / 1000 * 255 = 25.5 rounds half away from zero',
    );
    assert.equal(pixel(out.data, 256, 0, 248, 248, 0), 0);
    assert.deepEqual(
      [8, 9, 10, 11].map((x) => pixel(out.data, 256, 0, x, 8, 4)),
      [51, 102, 204, 0],
      'annotation: NCR 51, ED 102, ET 204',
    );
    assert.equal(out.reference.t1, 1000);
  });

  it('area-averages images and takes the majority label for the CPU presets', async () => {
    const dims: [number, number, number] = [240, 240, 1];
    const t1 = new Int16Array(240 * 240).fill(1000);
    // canvas block (8..11, 8..11) is the top-left 4x4 block of cpu64 pixel (2, 2): source (0..3, 0..3).
    for (let y = 0; y < 4; y++) for (let x = 0; x < 2; x++) t1[y * 240 + x] = 0;
    const seg = new Uint8Array(240 * 240);
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) seg[y * 240 + x] = y < 3 ? 2 : 1; // 12 ED, 4 NCR
    // next block (source x 4..7): 8 NCR + 8 background -> tie, the tumour class wins
    for (let y = 0; y < 2; y++) for (let x = 4; x < 8; x++) seg[y * 240 + x] = 1;
    const loaded = await loadTiny(root, { id: 'BraTS2021_00002', dims, images: { t1 }, seg });
    const out = sliceCase(loaded, SLICE_PRESETS.cpu64, 'max');
    assert.deepEqual(out.z, [0]);
    assert.equal(out.data.length, 64 * 64 * C);
    assert.equal(pixel(out.data, 64, 0, 2, 2, 0), 128, 'half the block at 255, half at 0: 127.5 -> 128');
    assert.equal(pixel(out.data, 64, 0, 3, 2, 0), 255);
    assert.equal(pixel(out.data, 64, 0, 1, 1, 0), 0, 'padding');
    assert.equal(decodeAnnotation(pixel(out.data, 64, 0, 2, 2, 4)), 2, 'majority ED');
    assert.equal(decodeAnnotation(pixel(out.data, 64, 0, 3, 2, 4)), 1, 'tie NCR/background -> NCR');
    const out32 = sliceCase(loaded, SLICE_PRESETS.cpu32, 'max');
    assert.equal(out32.data.length, 32 * 32 * C);
    // cpu32 pixel (1,1) covers canvas 8..15: 8 of its 64 pixels are 0 -> 255 * 56/64 = 223.125
    assert.equal(pixel(out32.data, 32, 0, 1, 1, 0), 223);
  });

  it('percentile scaling survives one hot voxel that empties a max-scaled volume', async () => {
    const dims: [number, number, number] = [240, 240, 1];
    const t1 = new Int16Array(240 * 240).fill(400);
    t1[5] = 32000; // one hot voxel
    const loaded = await loadTiny(root, { id: 'BraTS2021_00003', dims, images: { t1 } });
    const byMax = sliceCase(loaded, SLICE_PRESETS.paper, 'max');
    assert.deepEqual(byMax.z, [], 'the whole brain drops to ~3 under max scaling');
    const byPercentile = sliceCase(loaded, SLICE_PRESETS.paper, 'percentile');
    assert.deepEqual(byPercentile.z, [0]);
    assert.equal(byPercentile.reference.t1, 400);
    assert.equal(pixel(byPercentile.data, 256, 0, 20, 20, 0), 255);
    assert.equal(pixel(byPercentile.data, 256, 0, 13, 8, 0), 255, 'the hot voxel is clipped to 255');
  });
});

describe('sliceCase against an independent numpy implementation on the real BraTS case', () => {
  it('keeps the same slices and writes the same bytes', async () => {
    const caseDir = sharedDataFile('brats-sample', 'BraTS-GLI-00000-000');
    const [{ stdout }, loaded] = await Promise.all([
      run('/usr/bin/python3', [path.join(repoRoot(), 'test', 'oracles', 'paper_slices.py'), caseDir], {
        maxBuffer: 1 << 20,
      }),
      discoverBratsCases(caseDir).then(({ cases }) => loadCase(cases[0]!)),
    ]);
    const oracle = JSON.parse(stdout) as { kept: number[]; sha256: string };
    const ours = sliceCase(loaded, SLICE_PRESETS.paper, 'max');
    assert.ok(oracle.kept.length > 50, `oracle kept ${oracle.kept.length} slices`);
    assert.deepEqual(ours.z, oracle.kept);
    assert.equal(createHash('sha256').update(ours.data).digest('hex'), oracle.sha256);
  });
});
