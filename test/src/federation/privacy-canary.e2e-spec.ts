// Privacy canary: a unique byte pattern is planted in one site's private T1 volumes (uncompressed NIfTI, so it is
// in the file as is, and in the slices made from them). After a study ran to the end with separate processes, no
// window of the canary, of the site's private slice store or of its raw voxels appears anywhere the coordinator
// keeps things: its SQLite database (and journal), every blob, the transfer staging, and its log. Control: the same
// scan finds them in the site's own folders, so the scan is not vacuous.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { ByteScanner } from '../support/byte-scan.js';
import {
  phantomSites,
  type ProcessFederation,
  startProcessFederation,
  tinyStudy,
} from '../support/process-federation.js';

const WINDOW = 32;

/**
 * Plants `values` (int16) as a run of voxels along x in the middle of the brain of an int16 T1 NIfTI-1 (.nii.gz),
 * rewrites it uncompressed (.nii) and removes the .gz. Returns the planted bytes and the raw voxel bytes.
 */
async function plantCanary(gzFile: string, values: Int16Array): Promise<{ canary: Buffer; voxels: Buffer }> {
  const bytes = gunzipSync(await readFile(gzFile));
  assert.equal(bytes.readInt32LE(0), 348, 'NIfTI-1 little endian');
  const dims = [1, 2, 3].map((i) => bytes.readInt16LE(40 + 2 * i));
  assert.equal(bytes.readInt16LE(70), 4, 'int16 voxels');
  const voxOffset = Math.round(bytes.readFloatLE(108));
  const [w, h, d] = dims as [number, number, number];
  const start =
    voxOffset +
    2 * (Math.floor(w / 2 - values.length / 2) + Math.floor(h / 2) * w + Math.floor(d / 2) * w * h);
  const canary = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  canary.copy(bytes, start);
  const out = gzFile.replace(/\.gz$/, '');
  await writeFile(out, bytes);
  await rm(gzFile);
  return { canary: Buffer.from(canary), voxels: bytes.subarray(voxOffset) };
}

async function filesUnder(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile() && entry.name.endsWith(suffix)) out.push(path.join(entry.parentPath, entry.name));
  return out.sort();
}

describe('privacy canary: no private byte sequence reaches the coordinator (sqlite, processes)', () => {
  let pf: ProcessFederation;

  before(async () => {
    pf = await startProcessFederation('sqlite', { prefix: 'fedsynth-canary-' });
  });
  after(async () => {
    await pf?.dispose();
  });

  it('after a whole study, the canary and windows of private slices and voxels are only at the site', async () => {
    const sites = await phantomSites(path.join(pf.tmp, 'data'), [2, 2], 11);
    const canarySite = sites[0]!;

    // the canary: 48 int16 values from a random seed, within the volume's intensity range (so the slices keep it)
    const seed = createHash('sha256').update(`canary-${Date.now()}-${Math.random()}`).digest();
    // one scanner per kind, so that the control hits of one kind cannot crowd out another's
    const canaryScan = new ByteScanner(WINDOW);
    const voxelScan = new ByteScanner(WINDOW);
    const sliceScan = new ByteScanner(WINDOW);
    const canaries: Buffer[] = [];
    const voxelSources: Buffer[] = [];
    for (const t1 of (await filesUnder(canarySite.dir, '.nii.gz')).filter((f) => /-t1n\.nii\.gz$/.test(f))) {
      const values = new Int16Array(48);
      for (let i = 0; i < values.length; i++) values[i] = 200 + seed[i % 32]! * 3 + i;
      const { canary, voxels } = await plantCanary(t1, values);
      canaries.push(canary);
      voxelSources.push(voxels);
    }
    assert.ok(canaries.length >= 1, 'the canary site has T1 volumes');
    for (const [i, canary] of canaries.entries()) canaryScan.addWindows(canary, `canary#${i}`, 1, 8);
    for (const [i, voxels] of voxelSources.entries()) voxelScan.addWindows(voxels, `voxels#${i}`, 61);
    assert.ok(canaryScan.size > 0 && voxelScan.size > 1000, `${voxelScan.size} voxel windows`);

    for (const site of sites) {
      await pf.fed.addSite(site.name, site.dir);
      pf.fed.startAgent(site.name);
    }
    await pf.fed.waitForSites(sites.length);
    const id = await pf.createStudy(tinyStudy([...pf.fed.sites.values()].map((s) => s.siteId)));
    const study = await pf.waitForStudy(id);
    const pool = (study.pool as { sites: { sha256: string }[] }).sites;
    assert.equal(pool.length, 2, 'both sites pooled samples');

    // the site's private slice store (sliced by its agent from the planted volumes)
    const siteState = pf.fed.siteNamed(canarySite.name).stateDir;
    const stores = await filesUnder(siteState, '.fss');
    assert.ok(stores.length >= 1, `the agent keeps its slices under ${siteState}`);
    const { SliceStoreReader } = await import('@fedsynth/common/slices/index');
    let sliceWindows = 0;
    for (const store of stores) {
      const reader = await SliceStoreReader.open(store);
      const all = await reader.readIndices(Array.from({ length: reader.count }, (_, i) => i));
      await reader.close();
      sliceWindows += sliceScan.addWindows(all, `slices:${path.basename(store)}`, 7);
    }
    assert.ok(sliceWindows > 100, `${sliceWindows} slice windows to look for`);
    await pf.fed.close(); // everything flushed and closed before the scan

    // control: found at the site (the planted NIfTI files and the site's slice store)
    assert.ok(
      (await canaryScan.scanTree(canarySite.dir)).hits.length > 0,
      'the scan finds the canary at the site',
    );
    assert.ok((await voxelScan.scanTree(canarySite.dir)).hits.length > 0, 'the scan finds voxel windows');
    assert.ok((await sliceScan.scanTree(siteState)).hits.length > 0, 'the scan finds slice windows');

    // the coordinator: database (+ journal), blobs, staging, keys, and its log
    const coordinator = { files: 0, hits: [] as unknown[] };
    const log = { hits: [] as unknown[] };
    for (const scanner of [canaryScan, voxelScan, sliceScan]) {
      const found = await scanner.scanTree(pf.fed.dataDir);
      coordinator.files = found.files;
      coordinator.hits.push(...found.hits);
      log.hits.push(...(await scanner.scanTree(pf.fed.coordinatorLog)).hits);
    }
    const blobs = await filesUnder(path.join(pf.fed.dataDir, 'blobs'), '');
    assert.ok(blobs.length >= 2 * 2 + 2, `weights and samples were stored (${blobs.length} blobs)`);
    assert.ok(coordinator.files > blobs.length, 'the database file was scanned too');
    assert.deepEqual(coordinator.hits, [], 'no private bytes in the coordinator data dir');
    assert.deepEqual(log.hits, [], 'no private bytes in the coordinator log');
    // and the canary as text (hex or base64, e.g. in a JSON log line or column) is not there either
    const text =
      (await readFile(pf.fed.coordinatorLog, 'utf8')) +
      (await readFile(pf.fed.db.slice('sqlite:'.length)).catch(() => Buffer.alloc(0))).toString('latin1');
    for (const canary of canaries) {
      assert.ok(!text.includes(canary.toString('hex')));
      assert.ok(!text.includes(canary.subarray(0, 24).toString('base64')));
    }
  });
});
