// Faults of a whole federation of processes (coordinator and site agents as `fedsynth` processes, SQLite — and
// PostgreSQL when FEDSYNTH_TEST_POSTGRES_URL is set):
// - the coordinator is SIGKILLed in each phase of a study (sites training, a site uploading weights, the next round
//   being dispatched, a site uploading samples) and restarted on the same database, data dir and port: the study
//   finishes with exactly one pool row per site whose blob is intact, and no extra sample blob;
// - a site agent is SIGKILLed while uploading and restarted: its upload resumes where the coordinator's staging left
//   off;
// - a site that never answers (connected, then SIGSTOPped) and one whose agent never started: the round closes at its
//   deadline with the minimum of sites and the study finishes without them.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { after, before, beforeEach, describe, it } from 'node:test';
import path from 'node:path';
import { testDialects } from '@fedsynth/coordinator/testing/test-database';
import { SliceStoreReader } from '@fedsynth/common/slices/index';
import { blobPath } from '@fedsynth/site-agent/demo/federated-demo';
import type { DemoSiteData } from '@fedsynth/site-agent/demo/demo-data';
import {
  type Json,
  phantomSites,
  type ProcessFederation,
  startProcessFederation,
  tinyStudy,
} from '../support/process-federation.js';

interface PoolSite {
  siteId: string;
  sha256: string;
  size: number;
  count: number;
}

/** The study's pool: one row per site, each blob present, hashing to its name, a slice store of `count` slices. */
async function checkPool(pf: ProcessFederation, studyId: string, siteIds: string[], perSite: number) {
  const study = await pf.study(studyId);
  const pool = (study.pool as { sites: PoolSite[] }).sites;
  assert.deepEqual(pool.map((p) => p.siteId).sort(), [...siteIds].sort(), 'one pool entry per site');
  const rows = await pf.query<{ site_id: string; n: number | string }>(
    'SELECT site_id, COUNT(*) AS n FROM pool_samples WHERE study_id = ? GROUP BY site_id',
    [studyId],
  );
  assert.deepEqual(
    rows.map((r) => [r.site_id, Number(r.n)]).sort(),
    [...siteIds].sort().map((id) => [id, 1]),
    'exactly one pool_samples row per site',
  );
  for (const p of pool) {
    const file = blobPath(pf.fed.dataDir, p.sha256);
    const bytes = await readFile(file);
    assert.equal(bytes.length, p.size);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), p.sha256, 'the pooled blob is intact');
    const reader = await SliceStoreReader.open(file);
    assert.equal(reader.count, perSite);
    assert.equal(p.count, perSite);
    await reader.close();
  }
  // no second (lost or duplicated) sample blob: every 'samples' upload of the study's sample jobs is the pooled one
  const sampleBlobs = await pf.query<{ site_id: string; sha256: string }>(
    "SELECT b.site_id AS site_id, b.sha256 AS sha256 FROM blobs b WHERE b.kind = 'samples' AND b.job_id IN " +
      "(SELECT id FROM jobs WHERE study_id = ? AND kind = 'sample')",
    [studyId],
  );
  for (const siteId of siteIds) {
    const shas = new Set(sampleBlobs.filter((b) => b.site_id === siteId).map((b) => b.sha256));
    assert.deepEqual([...shas], [pool.find((p) => p.siteId === siteId)!.sha256], `sample blobs of ${siteId}`);
  }
  return study;
}

function jobStates(pf: ProcessFederation, studyId: string) {
  return pf.query<{ kind: string; state: string; site_id: string; round_id: string | null }>(
    'SELECT kind, state, site_id, round_id FROM jobs WHERE study_id = ?',
    [studyId],
  );
}

for (const dialect of testDialects()) {
  describe(`study faults with separate processes (${dialect})`, () => {
    let pf: ProcessFederation;
    let data: DemoSiteData[];

    before(async () => {
      pf = await startProcessFederation(dialect, { prefix: 'fedsynth-faults-' });
      data = await phantomSites(path.join(pf.tmp, 'data'), [2, 2, 2], 5);
      for (const site of data) await pf.fed.addSite(site.name, site.dir);
    });
    after(async () => {
      await pf?.dispose();
    });
    // each test starts the agents it needs
    beforeEach(async () => {
      for (const site of pf.fed.sites.values()) await pf.fed.stopAgent(site.name);
    });

    it('the coordinator is SIGKILLed in every phase of a study and restarted: the study finishes, pool intact', async () => {
      const names = ['site-1', 'site-2'];
      // slow uploads, so that "while uploading" is a phase one can hit
      for (const name of names)
        pf.fed.startAgent(name, ['--max-upload-rate', '100KB', '--chunk-size', '8192']);
      await pf.fed.waitForSites(2);
      const siteIds = names.map((n) => pf.fed.siteNamed(n).siteId);
      const studyId = await pf.createStudy(tinyStudy(siteIds, { samplesPerSite: 96 }));
      const phases: string[] = [];
      const crash = async (phase: string, probe: () => Promise<boolean>) => {
        await pf.waitUntil(async () => (await probe()) || undefined, phase, 240_000);
        await pf.fed.killCoordinator();
        phases.push(phase);
        await pf.fed.startCoordinator();
      };

      await crash('sites training', async () =>
        (await jobStates(pf, studyId)).some((j) => j.kind === 'train-round' && j.state === 'running'),
      );
      await crash('a site uploading weights', async () =>
        (await jobStates(pf, studyId)).some((j) => j.kind === 'train-round' && j.state === 'uploading'),
      );
      await crash('aggregation and next-round dispatch', async () => {
        const rounds = await pf.query(
          'SELECT round_index FROM study_rounds WHERE study_id = ? AND round_index = 1',
          [studyId],
        );
        return rounds.length > 0;
      });
      await crash('a site uploading samples', async () =>
        (await jobStates(pf, studyId)).some((j) => j.kind === 'sample' && j.state === 'uploading'),
      );
      assert.equal(pf.fed.restarts, 4);

      const study = await pf.waitForStudy(studyId);
      const rounds = study.roundHistory as { index: number; state: string; contributors: string[] }[];
      assert.deepEqual(
        rounds.map((r) => [r.index, r.state, [...r.contributors].sort()]),
        [0, 1].map((i) => [i, 'done', [...siteIds].sort()]),
        'both rounds closed with both sites',
      );
      await checkPool(pf, studyId, siteIds, 96);
      assert.deepEqual(phases.length, 4);
      for (const name of names) await pf.fed.stopAgent(name);
    });

    it('a site agent killed while uploading is restarted: the rerun replaces the half-sent upload, nothing is stored twice', async () => {
      const name = 'site-1';
      const siteId = pf.fed.siteNamed(name).siteId;
      const slow = ['--max-upload-rate', '20KB', '--chunk-size', '4096'];
      // chunks the coordinator's staging acknowledged (each in its transfer's index, 4 bytes a chunk)
      const staging = path.join(pf.fed.dataDir, 'transfers');
      const received = async () => {
        let chunks = 0;
        for (const file of await readdir(staging).catch(() => [] as string[]))
          if (file.endsWith('.idx')) chunks += (await stat(path.join(staging, file))).size / 4;
        return chunks;
      };
      const earlier = await received(); // transfers left incomplete by the previous test
      const first = pf.fed.startAgent(name, slow);
      await pf.fed.waitForSites(1);
      const studyId = await pf.createStudy(tinyStudy([siteId], { rounds: 1, samplesPerSite: 96 }));
      // kill once a few chunks of the weights upload (~0.4 MB at 20 KB/s) are acknowledged
      await pf.waitUntil(
        async () => (await received()) >= earlier + 3,
        'three chunks at the coordinator',
        120_000,
      );
      await pf.fed.group.kill(first);
      const before = (await received()) - earlier;
      // the site's log file accumulates across agents and tests (the first test logs resumes too): read only what
      // was written after the second agent started
      const logStart = (await stat(first.logFile)).size;
      const second = pf.fed.startAgent(name, ['--chunk-size', '65536']);
      await pf.waitForStudy(studyId);
      const secondLog = (await readFile(second.logFile)).subarray(logStart).toString('utf8');
      // The rerun trains again from its checkpoint and writes new weight files (their createdAt differs), so the agent
      // must not resume the half-sent bytes: it says so, aborts that transfer and sends the new ones. (Resuming the
      // same bytes after a restart is covered by upload-rerun.e2e-spec.ts.)
      assert.ok(before >= 3, `chunks were staged before the kill (${before})`);
      assert.match(secondLog, /the weights output differs from the one begun before; uploading the new one/);
      assert.doesNotMatch(secondLog, /could not abort the superseded/);
      // one round-update blob per role: the superseded half upload never became a blob
      const updates = await pf.query<{ role: string; n: number | string }>(
        "SELECT role, COUNT(*) AS n FROM blobs WHERE kind = 'round-update' AND site_id = ? AND job_id IN " +
          '(SELECT id FROM jobs WHERE study_id = ?) GROUP BY role',
        [siteId, studyId],
      );
      for (const u of updates) assert.equal(Number(u.n), 1, `${u.role} stored once`);
      await checkPool(pf, studyId, [siteId], 96);
      await pf.fed.stopAgent(name);
    });

    // The round deadline must leave the live sites time to start and train on a loaded 2-core machine: the round
    // gives up 3 × roundTimeoutMs after it opened, and sampling has roundTimeoutMs.
    it('a stopped (SIGSTOP) site and a site never started: the round times out and goes on with the minimum', async () => {
      const running = ['site-1', 'site-2'];
      for (const name of running) pf.fed.startAgent(name);
      const stalled = pf.fed.startAgent('site-3');
      await pf.fed.waitForSites(3);
      stalled.child.kill('SIGSTOP');
      // a fourth site, enrolled but never run
      const never = await pf.fed.addSite('site-never', data[0]!.dir);
      const siteIds = [...running, 'site-3'].map((n) => pf.fed.siteNamed(n).siteId).concat(never.siteId);
      const studyId = await pf.createStudy(
        tinyStudy(siteIds, { rounds: 1, minSites: 2, roundTimeoutMs: 30_000, samplesPerSite: 16 }),
      );
      const study: Json = await pf.waitForStudy(studyId);
      const live = running.map((n) => pf.fed.siteNamed(n).siteId).sort();
      const rounds = study.roundHistory as { contributors: string[]; participants: string[] }[];
      assert.equal(rounds.length, 1);
      assert.deepEqual(
        [...rounds[0]!.contributors].sort(),
        live,
        'the round went on with the two live sites',
      );
      await checkPool(pf, studyId, live, 16);
      // the stalled and the absent site's jobs were given up (round deadline, then sampling deadline)
      const others = (await jobStates(pf, studyId)).filter((j) => !live.includes(j.site_id));
      assert.ok(others.length > 0 && others.every((j) => j.state === 'failed'), JSON.stringify(others));
      for (const name of [...running, 'site-3']) await pf.fed.stopAgent(name); // SIGCONT, then SIGTERM
    });
  });
}
