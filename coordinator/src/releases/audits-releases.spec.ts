// The audit round and the release gate on a real coordinator (SQLite; PostgreSQL when configured), over HTTP: a
// generator study is seeded as the orchestrator leaves it when done (a 'done' studies row; per contributing site a
// done 'sample' job whose output is a real slice-store upload, and its pool_samples row), the audit jobs are
// completed as sites would (accept, upload a real 'scores' JSON blob, job:result), and the report, the decision
// rules and the released archive are checked — the archive with tar and sha256sum.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { AuditScores, SamplePayload } from '@fedsynth/common/protocol/job-payloads';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { removeReleaseFolder } from '@fedsynth/common/release/index';
import { buildSliceStore, SliceStoreReader } from '@fedsynth/common/slices/index';
import { DataSource } from 'typeorm';
import { flaggedOf, histogram } from '../audits/audit-scores.js';
import { Audit, type AuditSiteResult } from '../audits/audit.entity.js';
import { AuditsService } from '../audits/audits.service.js';
import { BlobsService } from '../blobs/blobs.service.js';
import { Job } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { SitesService } from '../sites/sites.service.js';
import { PoolSample, Study, type StudyState } from '../studies/study.entity.js';
import { newSiteKey, signEnrollmentProof } from '../testing/enrollment-proof.js';
import { startTestCoordinator, type TestCoordinator } from '../testing/test-coordinator.js';
import { createTestDatabase, testDialects } from '../testing/test-database.js';
import { ReleasesService } from './releases.service.js';

const run = promisify(execFile);

/** A deterministic "site answer": scores in [-0.2, 0.95], threshold, flagged = above it (the site's rule). */
function siteScores(count: number, salt: number, threshold: number): AuditScores {
  const scores = Array.from(
    { length: count },
    (_, i) => Math.round((((i * 37 + salt * 11) % 100) / 100) * 115 - 20) / 100,
  );
  const reference = Array.from({ length: 12 }, (_, i) => 0.3 + ((i * 7 + salt) % 10) / 40);
  return {
    format: 'fedsynth-audit-scores',
    version: 1,
    scores,
    reference,
    threshold,
    flagged: scores.flatMap((s, i) => (s > threshold ? [i] : [])),
  };
}

async function activeSite(coordinator: TestCoordinator, name: string): Promise<string> {
  const sites = coordinator.app.get(SitesService);
  const minted = await sites.create(name);
  const key = await newSiteKey();
  const proof = await signEnrollmentProof({
    key,
    enrollmentToken: minted.enrollmentToken,
    siteId: minted.site.id,
    audience: coordinator.config.audience,
    iat: coordinator.clock.nowSeconds(),
  });
  await sites.enroll(proof);
  return minted.site.id;
}

/** What the transfer receiver records when a site's upload for a job commits. */
async function upload(
  coordinator: TestCoordinator,
  siteId: string,
  jobId: string,
  data: Buffer,
  role: string,
  kind: string,
) {
  const blobs = coordinator.app.get(BlobsService);
  const blob = await blobs.store.putStream(Readable.from([data]));
  await blobs.recordUpload({
    siteId,
    transferId: randomUUID(),
    kind,
    blob,
    jobId,
    role,
    meta: { jobId },
  });
  return { role, sha256: blob.sha256, size: blob.size };
}

/**
 * A generator study as the orchestrator leaves it (state `state`, default done): per contribution a done 'sample'
 * job with its slice store uploaded and the pool_samples row, in the order given. Returns the study id.
 */
async function seedStudy(
  coordinator: TestCoordinator,
  contributions: Array<{ siteId: string; store: string; seed: number }>,
  state: StudyState = 'done',
): Promise<string> {
  const id = randomUUID();
  const data = coordinator.app.get(DataSource);
  const now = coordinator.clock.now();
  const model = { task: 'generator', model: 'stylegan2', profile: 'tiny' } as const;
  await data.getRepository(Study).insert({
    id,
    name: `study-${id.slice(0, 8)}`,
    model,
    mode: 'local',
    rounds: 1,
    localSteps: 1,
    batchSize: 1,
    samplesPerSite: 100,
    minSites: 1,
    roundTimeoutMs: 60_000,
    maxSeconds: null,
    siteIds: contributions.map((x) => x.siteId),
    seed: 1,
    truncationPsi: 1,
    ddimSteps: 50,
    data: null,
    syntheticPoolSha256: null,
    state,
    currentRound: 0,
    samplingSiteIds: null,
    modelSha256: null,
    error: state === 'failed' ? 'seeded as failed' : null,
    createdBy: null,
    createdAt: now,
    updatedAt: now,
    finishedAt: state === 'done' || state === 'failed' ? now : null,
  } as never);
  const jobs = coordinator.app.get(JobsService);
  for (const { siteId, store, seed } of contributions) {
    const payload: SamplePayload = { studyId: id, model, n: 100, seed, truncationPsi: 1, ddimSteps: 50 };
    const job = await jobs.enqueue(siteId, 'sample', payload, { studyId: id });
    await jobs.accept(siteId, job.id, 1);
    const output = await upload(coordinator, siteId, job.id, await readFile(store), 'samples', 'samples');
    await jobs.complete(siteId, { jobId: job.id, attempt: 1, outputs: [output] });
    const reader = await SliceStoreReader.open(store);
    const count = reader.count;
    await reader.close();
    await data.getRepository(PoolSample).insert({
      id: randomUUID(),
      studyId: id,
      siteId,
      jobId: job.id,
      sha256: output.sha256,
      size: output.size,
      count,
      generator: model.model,
      seed,
      round: 0,
      createdAt: coordinator.clock.now(),
    });
    coordinator.clock.advance(1000); // the pool is listed by creation time: contributions in the order given
  }
  return id;
}

for (const dialect of testDialects()) {
  describe(`audits and releases (${dialect})`, () => {
    let c: TestCoordinator;
    let root: string;
    let stores: string[];
    let siteIds: string[];
    let admin: string;
    let auditor: string;
    let researcher: string;
    let study: string;

    /** Answers a site's audit job as its agent would. */
    async function answer(coordinator: TestCoordinator, auditId: string, siteId: string, scores: unknown) {
      const jobs = coordinator.app.get(JobsService);
      const [job] = (await jobs.list({ siteId, kind: 'audit' })).filter((j) => j.payload.auditId === auditId);
      assert.ok(job, `site ${siteId} has an audit job`);
      await jobs.accept(siteId, job.id, job.attempt);
      const output = await upload(
        coordinator,
        siteId,
        job.id,
        Buffer.from(JSON.stringify(scores)),
        'scores',
        'job-output',
      );
      await jobs.complete(siteId, {
        jobId: job.id,
        attempt: job.attempt,
        outputs: [output],
        metrics: { candidates: 1 },
      });
      await coordinator.app.get(AuditsService).settled();
    }

    let candidateCount: number;
    let allSlices: Buffer;

    before(async () => {
      root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-audit-'));
      const manifest = await writePhantomSites({
        out: path.join(root, 'data'),
        sites: 2,
        cases: 4,
        seed: 5,
        naming: '2023',
        dims: [64, 64, 40],
        siteSizes: [2, 2],
      });
      stores = [];
      const parts: Buffer[] = [];
      for (const site of manifest.sites) {
        const out = path.join(root, `${site.name}.fss`);
        await buildSliceStore({ dataDir: site.dir, out, preset: 'cpu32', testFraction: 0, seed: 1 });
        stores.push(out);
        const reader = await SliceStoreReader.open(out);
        parts.push(Buffer.from(await reader.readRange(0, reader.count)));
        await reader.close();
      }
      allSlices = Buffer.concat(parts);
      candidateCount = allSlices.length / (32 * 32 * 5);
      c = await startTestCoordinator(dialect);
      siteIds = [
        await activeSite(c, 'hospital-a'),
        await activeSite(c, 'hospital-b'),
        await activeSite(c, 'hospital-c'),
      ];
      // hospital-c contributes no samples but audits too
      study = await seedStudy(c, [
        { siteId: siteIds[0]!, store: stores[0]!, seed: 11 },
        { siteId: siteIds[1]!, store: stores[1]!, seed: 12 },
      ]);
      admin = await c.tokenFor('admin');
      auditor = await c.tokenFor('auditor');
      researcher = await c.tokenFor('researcher');
    });
    after(async () => {
      // release folders are read-only (0555): open them up so the data dir can be removed
      for (const release of (await c?.app.get(ReleasesService).list({ readyOnly: false })) ?? [])
        await removeReleaseFolder(release.folder);
      await c?.dispose();
      await rm(root, { recursive: true, force: true });
    });

    it('refuses audits to non-admins, of unknown or unfinished studies, without samples or a contributor', async () => {
      const body = { studyId: study, margin: 0.02 };
      assert.equal((await c.request('POST', '/api/audits', { body, token: researcher })).status, 403);
      assert.equal((await c.request('POST', '/api/audits', { body, token: auditor })).status, 403);
      const start = (studyId: string) =>
        c.request('POST', '/api/audits', { body: { studyId, margin: 0.02 }, token: admin });
      assert.equal((await start(randomUUID())).status, 404);
      assert.equal((await start('nothing-here')).status, 400);

      const failed = await start(
        await seedStudy(c, [{ siteId: siteIds[0]!, store: stores[0]!, seed: 1 }], 'failed'),
      );
      assert.equal(failed.status, 409);
      assert.match(failed.body.message, /is failed; only a done study/);

      const empty = await start(await seedStudy(c, []));
      assert.equal(empty.status, 409);
      assert.match(empty.body.message, /no samples/);

      // a contributor that was revoked since: its private slices could not be checked, so no audit at all
      const gone = await activeSite(c, 'hospital-gone');
      const withGone = await seedStudy(c, [
        { siteId: siteIds[0]!, store: stores[0]!, seed: 2 },
        { siteId: gone, store: stores[1]!, seed: 3 },
      ]);
      await c.app.get(SitesService).revoke(gone);
      const refused = await start(withGone);
      assert.equal(refused.status, 409);
      assert.match(refused.body.message, /site hospital-gone contributed samples .* but is revoked/);
      assert.deepEqual(await c.app.get(AuditsService).list({ studyId: withGone }), []);

      // only rows of the pool count: a done sample job that the orchestrator did not pool is not a candidate
      const stray = await c.app
        .get(JobsService)
        .enqueue(siteIds[2]!, 'sample', { studyId: study }, { studyId: study });
      await c.app.get(JobsService).accept(siteIds[2]!, stray.id, 1);
      const strayOut = await upload(
        c,
        siteIds[2]!,
        stray.id,
        await readFile(stores[0]!),
        'samples',
        'samples',
      );
      await c.app
        .get(JobsService)
        .complete(siteIds[2]!, { jobId: stray.id, attempt: 1, outputs: [strayOut] });
      assert.equal(
        (await c.request('POST', '/api/audits', { body: { studyId: study, margin: 2 }, token: admin }))
          .status,
        400,
      );
    });

    it('audits the pool at every active site, combines the scores, and gates the release on approval', async () => {
      const started = await c.request('POST', '/api/audits', {
        body: { studyId: study, margin: 0.02 },
        token: admin,
      });
      assert.equal(started.status, 201, JSON.stringify(started.body));
      const audit = started.body;
      assert.equal(audit.state, 'scoring');
      assert.equal(audit.candidates, candidateCount);
      assert.deepEqual(
        audit.sites.map((s: { state: string }) => s.state),
        ['pending', 'pending', 'pending'],
      );

      // one job per active site, with the pool as input; the pool is the sample stores concatenated
      const jobs = c.app.get(JobsService);
      const auditJobs = (await jobs.list({ kind: 'audit', studyId: study })).filter(
        (j) => j.payload.auditId === audit.id,
      );
      assert.deepEqual(auditJobs.map((j) => j.siteId).sort(), [...siteIds].sort());
      for (const j of auditJobs) {
        assert.deepEqual(j.payload, { studyId: study, auditId: audit.id, margin: 0.02 });
        assert.deepEqual(
          j.inputs.map((i) => [i.role, i.kind, i.sha256]),
          [['audit-pool', 'audit-pool', audit.poolSha256]],
        );
      }
      const pool = await SliceStoreReader.open(c.app.get(BlobsService).store.pathOf(audit.poolSha256));
      assert.equal(pool.count, candidateCount);
      assert.ok(
        Buffer.from(await pool.readRange(0, pool.count)).equals(allSlices),
        'pool = samples of A then B',
      );
      await pool.close();

      // researchers never see audits; no release before a decision
      assert.equal((await c.request('GET', `/api/audits/${audit.id}`, { token: researcher })).status, 403);
      assert.equal(
        (await c.request('POST', '/api/releases', { body: { auditId: audit.id }, token: admin })).status,
        409,
      );

      // site A answers without referenceKind (an agent from before the field), B had no held-out subject
      const answers: AuditScores[] = [
        siteScores(candidateCount, 1, 0.8),
        { ...siteScores(candidateCount, 2, 0.85), referenceKind: 'leave-one-subject-out' },
        { ...siteScores(candidateCount, 3, 0.9), referenceKind: 'held-out' },
      ];
      const expectedKinds = ['held-out', 'leave-one-subject-out', 'held-out'];
      await answer(c, audit.id, siteIds[0]!, answers[0]);
      await answer(c, audit.id, siteIds[1]!, answers[1]);
      const partial = (await c.request('GET', `/api/audits/${audit.id}`, { token: auditor })).body;
      assert.equal(partial.state, 'scoring');
      assert.deepEqual(
        siteIds.map((id) => partial.sites.find((s: { siteId: string }) => s.siteId === id).referenceKind),
        ['held-out', 'leave-one-subject-out', null],
        'a pending site has no reference yet',
      );
      assert.equal(
        (
          await c.request('POST', `/api/audits/${audit.id}/decision`, {
            body: { approve: true },
            token: admin,
          })
        ).status,
        409,
        'no decision while scoring',
      );
      await answer(c, audit.id, siteIds[2]!, answers[2]);

      const report = (await c.request('GET', `/api/audits/${audit.id}`, { token: auditor })).body;
      assert.equal(report.state, 'scored');
      const expectedWithheld = [...new Set(answers.flatMap((a) => a.flagged))].sort((x, y) => x - y);
      assert.ok(expectedWithheld.length > 0 && expectedWithheld.length < candidateCount);
      assert.equal(report.combined.withheldCount, expectedWithheld.length);
      assert.equal(report.combined.releasable, candidateCount - expectedWithheld.length);
      assert.deepEqual(
        report.flaggedCandidates.map((f: { index: number }) => f.index),
        expectedWithheld,
      );
      for (const f of report.flaggedCandidates) {
        assert.equal(
          f.maxScore,
          Math.max(...answers.map((a) => a.scores[f.index]!)),
          `max over sites of ${f.index}`,
        );
        assert.equal(f.png, `/api/audits/${audit.id}/candidates/${f.index}.png`);
      }
      report.sites.forEach(
        (s: {
          siteId: string;
          threshold: number;
          referenceKind: string;
          flaggedCount: number;
          scoreHistogram: { counts: number[] };
          referenceHistogram: { counts: number[] };
        }) => {
          const a = answers[siteIds.indexOf(s.siteId)]!;
          assert.equal(s.threshold, a.threshold);
          assert.equal(s.referenceKind, expectedKinds[siteIds.indexOf(s.siteId)]);
          assert.equal(s.flaggedCount, a.flagged.length);
          assert.equal(
            s.scoreHistogram.counts.reduce((x, y) => x + y, 0),
            candidateCount,
          );
          assert.equal(
            s.referenceHistogram.counts.reduce((x, y) => x + y, 0),
            a.reference.length,
          );
        },
      );

      // the PNG of a flagged candidate: a real PNG of one synthetic slice (5 tiles wide)
      const png = await fetch(`${c.url}${report.flaggedCandidates[0].png}`, {
        headers: { authorization: `Bearer ${auditor}` },
      });
      assert.equal(png.status, 200);
      assert.equal(png.headers.get('content-type'), 'image/png');
      const bytes = Buffer.from(await png.arrayBuffer());
      assert.equal(bytes.toString('latin1', 1, 4), 'PNG');
      const pngNo = await fetch(`${c.url}${report.flaggedCandidates[0].png}`, {
        headers: { authorization: `Bearer ${researcher}` },
      });
      assert.equal(pngNo.status, 403);
      assert.equal(
        (await c.request('GET', `/api/audits/${audit.id}/candidates/${candidateCount}.png`, { token: admin }))
          .status,
        404,
      );

      // decision: admin only, once
      assert.equal(
        (
          await c.request('POST', `/api/audits/${audit.id}/decision`, {
            body: { approve: true },
            token: auditor,
          })
        ).status,
        403,
      );
      const decided = await c.request('POST', `/api/audits/${audit.id}/decision`, {
        body: { approve: true, comment: 'thresholds look sane' },
        token: admin,
      });
      assert.equal(decided.status, 200, JSON.stringify(decided.body));
      assert.equal(decided.body.state, 'approved');
      assert.equal(decided.body.decision.comment, 'thresholds look sane');
      assert.equal(decided.body.decision.at, c.clock.now().toISOString());
      assert.equal(
        (
          await c.request('POST', `/api/audits/${audit.id}/decision`, {
            body: { approve: false },
            token: admin,
          })
        ).status,
        409,
      );

      // release: admin only, one per approved audit
      assert.equal(
        (await c.request('POST', '/api/releases', { body: { auditId: audit.id }, token: researcher })).status,
        403,
      );
      const created = await c.request('POST', '/api/releases', { body: { auditId: audit.id }, token: admin });
      assert.equal(created.status, 202, JSON.stringify(created.body));
      assert.equal(created.body.version, 1);
      assert.equal(
        (await c.request('POST', '/api/releases', { body: { auditId: audit.id }, token: admin })).status,
        409,
      );
      const built = await c.app.get(ReleasesService).settled(created.body.id);
      assert.equal(built.state, 'ready', built.error ?? '');
      assert.equal(built.sampleCount, candidateCount - expectedWithheld.length);

      const list = await c.request('GET', '/api/releases', { token: researcher });
      assert.deepEqual(
        list.body.map((r: { id: string }) => r.id),
        [built.id],
      );
      const detail = (await c.request('GET', `/api/releases/${built.id}`, { token: researcher })).body;
      assert.equal(detail.card.samples, built.sampleCount);
      assert.equal(detail.card.audit.withheld, expectedWithheld.length);
      assert.deepEqual(
        detail.card.audit.sites
          .map((s: { site: string; referenceKind: string }) => `${s.site} ${s.referenceKind}`)
          .sort(),
        ['hospital-a held-out', 'hospital-b leave-one-subject-out', 'hospital-c held-out'],
      );
      assert.equal(
        detail.card.sites.reduce((n: number, s: { samples: number }) => n + s.samples, 0),
        built.sampleCount,
      );
      assert.deepEqual(detail.card.evaluation, [], 'the default evidence has no numbers');
      assert.match(detail.manifest, /card\.json\n/);

      // download as a researcher: a tar whose manifest verifies; auditors cannot download
      assert.equal(
        (await c.request('GET', `/api/releases/${built.id}/download`, { token: auditor })).status,
        403,
      );
      const res = await fetch(`${c.url}/api/releases/${built.id}/download`, {
        headers: { authorization: `Bearer ${researcher}` },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/x-tar');
      assert.match(res.headers.get('content-disposition') ?? '', /filename="fedsynth-release-v1\.tar"/);
      assert.equal(res.headers.get('x-manifest-sha256'), built.manifestSha256);
      const tarFile = path.join(root, 'download.tar');
      await writeFile(tarFile, Buffer.from(await res.arrayBuffer()));
      const x = path.join(root, 'x');
      await mkdir(x);
      await run('tar', ['-xf', tarFile, '-C', x]);
      const folder = path.join(x, 'fedsynth-release-v1');
      await run('sha256sum', ['-c', '--quiet', 'MANIFEST.sha256'], { cwd: folder });
      const readme = await readFile(path.join(folder, 'README.md'), 'utf8');
      assert.match(readme, /\| hospital-b \| [0-9.]+ \| leave-one-subject-out \| \d+ \|/);
      assert.match(readme, /\| hospital-a \| [0-9.]+ \| held-out \| \d+ \|/);
      const manifest = await readFile(path.join(folder, 'MANIFEST.sha256'));
      assert.equal(createHash('sha256').update(manifest).digest('hex'), built.manifestSha256);
      const provenance = (await readFile(path.join(folder, 'provenance.csv'), 'utf8'))
        .trim()
        .split('\n')
        .slice(1);
      const released = provenance.map((r) => Number(r.split(',')[1]));
      assert.equal(released.length, built.sampleCount);
      assert.ok(
        released.every((i) => !expectedWithheld.includes(i)),
        'no withheld candidate is released',
      );

      assert.equal(
        (await c.request('GET', `/api/releases/${randomUUID()}/download`, { token: researcher })).status,
        404,
      );
    });

    /** A new audit of the study, answered by every site and approved. */
    async function approvedAudit(): Promise<string> {
      const audit = (
        await c.request('POST', '/api/audits', { body: { studyId: study, margin: 0.02 }, token: admin })
      ).body;
      for (const [k, siteId] of siteIds.entries())
        await answer(c, audit.id, siteId, siteScores(candidateCount, k + 7, 0.85));
      const decided = await c.request('POST', `/api/audits/${audit.id}/decision`, {
        body: { approve: true },
        token: admin,
      });
      assert.equal(decided.body.state, 'approved');
      return audit.id;
    }

    const download = (id: string) =>
      fetch(`${c.url}/api/releases/${id}/download`, { headers: { authorization: `Bearer ${researcher}` } });

    it('a failed build does not block its audit: a new attempt takes over the row with the next version', async () => {
      const auditId = await approvedAudit();
      const releases = c.app.get(ReleasesService);
      const before = Math.max(0, ...(await releases.list({ readyOnly: false })).map((r) => r.version));
      // the build fails: one of the pool's sample stores has gone from the blob store
      const source = (await c.app.get(AuditsService).get(auditId)).sources[0]!;
      const blobFile = c.app.get(BlobsService).store.pathOf(source.sha256);
      await rename(blobFile, `${blobFile}.away`);
      const first = await c.request('POST', '/api/releases', { body: { auditId }, token: admin });
      assert.equal(first.status, 202, JSON.stringify(first.body));
      const failed = await releases.settled(first.body.id);
      await rename(`${blobFile}.away`, blobFile);
      assert.equal(failed.state, 'failed');
      assert.equal(failed.version, before + 1);
      assert.match(failed.error ?? '', /ENOENT|no such file/);
      assert.equal((await c.request('GET', `/api/releases/${failed.id}`, { token: researcher })).status, 404);

      const retry = await c.request('POST', '/api/releases', { body: { auditId }, token: admin });
      assert.equal(retry.status, 202, JSON.stringify(retry.body));
      assert.equal(retry.body.id, failed.id, 'the failed row is reused (one release per audit)');
      assert.equal(retry.body.version, before + 2, 'a new version: a failed one is never reused');
      const built = await releases.settled(retry.body.id);
      assert.equal(built.state, 'ready', built.error ?? '');
      assert.equal(built.error, null);
      assert.equal(path.basename(built.folder), `v${before + 2}`);
      const all = await releases.list({ readyOnly: false });
      assert.equal(all.filter((r) => r.auditId === auditId).length, 1);
      assert.equal(new Set(all.map((r) => r.version)).size, all.length, 'versions stay unique');
      // a ready release is immutable: no second one for the audit
      const again = await c.request('POST', '/api/releases', { body: { auditId }, token: admin });
      assert.equal(again.status, 409);
      assert.match(again.body.message, /has a release already/);
      assert.equal((await releases.get(built.id)).manifestSha256, built.manifestSha256);
    });

    it('serves exactly the manifest\u2019s files from a read-only folder and refuses a tampered or incomplete one', async () => {
      const auditId = await approvedAudit();
      const releases = c.app.get(ReleasesService);
      const created = await c.request('POST', '/api/releases', { body: { auditId }, token: admin });
      const built = await releases.settled(created.body.id);
      assert.equal(built.state, 'ready', built.error ?? '');
      const folder = built.folder;
      const manifest = (await readFile(path.join(folder, 'MANIFEST.sha256'), 'utf8'))
        .trim()
        .split('\n')
        .map((line) => line.slice(66));
      for (const dir of [folder, path.join(folder, 'samples'), path.join(folder, 'previews')])
        assert.equal((await stat(dir)).mode & 0o777, 0o555, `${dir} is read-only`);
      assert.equal((await stat(path.join(folder, 'card.json'))).mode & 0o777, 0o444);

      // a file slipped into the folder is not in the manifest, so it is not served
      await chmod(folder, 0o755);
      await writeFile(path.join(folder, 'extra.txt'), 'not part of the release\n');
      await chmod(folder, 0o555);
      const ok = await download(built.id);
      assert.equal(ok.status, 200);
      const tarFile = path.join(root, `v${built.version}.tar`);
      await writeFile(tarFile, Buffer.from(await ok.arrayBuffer()));
      const prefix = `fedsynth-release-v${built.version}/`;
      const listed = (await run('tar', ['-tf', tarFile])).stdout
        .trim()
        .split('\n')
        .filter((name) => !name.endsWith('/'))
        .map((name) => name.slice(prefix.length));
      assert.deepEqual(listed, [...manifest, 'MANIFEST.sha256']);

      // a changed file: refused before anything is sent, the file named
      const victim = manifest.find((f) => f.endsWith('-t1c.nii.gz'))!;
      const victimFile = path.join(folder, ...victim.split('/'));
      const original = await readFile(victimFile);
      await chmod(victimFile, 0o644);
      const changed = Buffer.from(original);
      changed[changed.length - 1] ^= 0xff;
      await writeFile(victimFile, changed);
      const tampered = await download(built.id);
      assert.equal(tampered.status, 500);
      const why = ((await tampered.json()) as { message: string }).message;
      assert.ok(why.includes(`${victim} does not match its sha256`), why);
      assert.match(why, /download is refused/);

      // restored, it is served again; a missing file is refused too
      await writeFile(victimFile, original);
      assert.equal((await download(built.id)).status, 200);
      await chmod(path.dirname(victimFile), 0o755);
      await unlink(victimFile);
      const missing = await download(built.id);
      assert.equal(missing.status, 500);
      const whyMissing = ((await missing.json()) as { message: string }).message;
      assert.ok(whyMissing.includes(`${victim} is missing`), whyMissing);
    });

    it('a rejected audit is never released', async () => {
      const audit = (
        await c.request('POST', '/api/audits', { body: { studyId: study, margin: 0.05 }, token: admin })
      ).body;
      for (const [k, siteId] of siteIds.entries())
        await answer(c, audit.id, siteId, siteScores(candidateCount, k + 4, 0.8));
      const decided = await c.request('POST', `/api/audits/${audit.id}/decision`, {
        body: { approve: false },
        token: admin,
      });
      assert.equal(decided.body.state, 'rejected');
      const release = await c.request('POST', '/api/releases', { body: { auditId: audit.id }, token: admin });
      assert.equal(release.status, 409);
      assert.match(release.body.message, /rejected/);
    });

    it('refuses a malformed scores blob: the audit fails with the reason and the others stop', async () => {
      const audit = (
        await c.request('POST', '/api/audits', { body: { studyId: study, margin: 0.02 }, token: admin })
      ).body;
      const bad = { ...siteScores(candidateCount, 1, 0.8), scores: [0.1, 0.2] };
      await answer(c, audit.id, siteIds[0]!, bad);
      const report = (await c.request('GET', `/api/audits/${audit.id}`, { token: admin })).body;
      assert.equal(report.state, 'failed');
      assert.match(report.error, new RegExp(`hospital-a.*refused.*2 scores for a pool of ${candidateCount}`));
      assert.equal(report.sites[0].state, 'refused');
      const others = (await c.app.get(JobsService).list({ kind: 'audit' })).filter(
        (j) => j.payload.auditId === audit.id && j.siteId !== siteIds[0],
      );
      assert.deepEqual(
        others.map((j) => j.state),
        ['failed', 'failed'],
        'the other sites\u2019 jobs are cancelled',
      );
      assert.equal(
        (
          await c.request('POST', `/api/audits/${audit.id}/decision`, {
            body: { approve: true },
            token: admin,
          })
        ).status,
        409,
      );
      assert.equal(
        (await c.request('POST', '/api/releases', { body: { auditId: audit.id }, token: admin })).status,
        409,
      );
    });
  });

  describe(`audit restart safety (${dialect})`, () => {
    it('resumes from the database: results recorded while the coordinator was down are taken in, no job twice', async () => {
      const database = await createTestDatabase(dialect);
      const root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-audit-restart-'));
      let c: TestCoordinator | undefined;
      try {
        const manifest = await writePhantomSites({
          out: path.join(root, 'data'),
          sites: 1,
          cases: 2,
          seed: 9,
          naming: '2023',
          dims: [64, 64, 40],
        });
        const store = path.join(root, 's.fss');
        await buildSliceStore({
          dataDir: manifest.sites[0]!.dir,
          out: store,
          preset: 'cpu32',
          testFraction: 0,
          seed: 1,
        });
        c = await startTestCoordinator(dialect, { database });
        const ids = [await activeSite(c, 'r-a'), await activeSite(c, 'r-b')];
        const jobs = c.app.get(JobsService);
        const blobs = c.app.get(BlobsService);
        const studyId = await seedStudy(c, [{ siteId: ids[0]!, store, seed: 3 }]);
        const audit = await c.app.get(AuditsService).start(studyId, 0.02);
        const n = audit.candidateCount;
        // site r-a answers normally; site r-b's result is written to the jobs table without an event (as if the
        // coordinator crashed between recording the result and handling it)
        const auditJobs = (await jobs.list({ kind: 'audit' })).filter((j) => j.payload.auditId === audit.id);
        const jobA = auditJobs.find((j) => j.siteId === ids[0])!;
        const jobB = auditJobs.find((j) => j.siteId === ids[1])!;
        await jobs.accept(ids[0]!, jobA.id, 1);
        const scoresA = Buffer.from(JSON.stringify(siteScores(n, 1, 0.8)));
        const blobA = await blobs.store.putStream(Readable.from([scoresA]));
        await blobs.recordUpload({
          siteId: ids[0]!,
          transferId: 'ta',
          kind: 'job-output',
          blob: blobA,
          jobId: jobA.id,
          role: 'scores',
          meta: {},
        });
        await jobs.complete(ids[0]!, { jobId: jobA.id, attempt: 1, outputs: [{ role: 'scores', ...blobA }] });
        await c.app.get(AuditsService).settled();
        const scoresB = siteScores(n, 2, 0.85);
        const blobB = await blobs.store.putStream(Readable.from([Buffer.from(JSON.stringify(scoresB))]));
        await blobs.recordUpload({
          siteId: ids[1]!,
          transferId: 'tb',
          kind: 'job-output',
          blob: blobB,
          jobId: jobB.id,
          role: 'scores',
          meta: {},
        });
        await c.app
          .get(DataSource)
          .getRepository(Job)
          .update(
            { id: jobB.id },
            {
              state: 'done',
              result: { outputs: [{ role: 'scores', ...blobB }] } as never,
              finishedAt: c.clock.now(),
            },
          );
        assert.equal((await c.app.get(AuditsService).get(audit.id)).state, 'scoring');
        await c.dispose();
        c = undefined;

        c = await startTestCoordinator(dialect, { database });
        await c.app.get(AuditsService).settled();
        const resumed = await c.app.get(AuditsService).get(audit.id);
        assert.equal(resumed.state, 'scored', resumed.error ?? '');
        const expected = [...new Set([...siteScores(n, 1, 0.8).flagged, ...scoresB.flagged])].sort(
          (a, b) => a - b,
        );
        assert.deepEqual(resumed.combined!.withheld, expected);
        const after = (await c.app.get(JobsService).list({ kind: 'audit' })).filter(
          (j) => j.payload.auditId === audit.id,
        );
        assert.equal(after.length, 2, 'no job enqueued twice');
      } finally {
        await c?.dispose();
        await database.dispose();
        await rm(root, { recursive: true, force: true });
      }
    });

    it('a crash between the last site\u2019s result and combining: the restart combines and the audit is scored', async () => {
      const database = await createTestDatabase(dialect);
      const root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-audit-crash-'));
      let c: TestCoordinator | undefined;
      try {
        const manifest = await writePhantomSites({
          out: path.join(root, 'data'),
          sites: 1,
          cases: 2,
          seed: 4,
          naming: '2023',
          dims: [64, 64, 40],
        });
        const store = path.join(root, 's.fss');
        await buildSliceStore({
          dataDir: manifest.sites[0]!.dir,
          out: store,
          preset: 'cpu32',
          testFraction: 0,
          seed: 1,
        });
        c = await startTestCoordinator(dialect, { database });
        const ids = [await activeSite(c, 'k-a'), await activeSite(c, 'k-b')];
        const studyId = await seedStudy(c, [{ siteId: ids[1]!, store, seed: 5 }]);
        const audit = await c.app.get(AuditsService).start(studyId, 0.02);
        const n = audit.candidateCount;
        const answers = [siteScores(n, 7, 0.8), siteScores(n, 8, 0.75)];
        // Both sites' results are in the jobs table and both site entries of the audit row are 'scored' (what
        // onJobDone's last update() writes), but the audit is still 'scoring': the process died before combine().
        const data = c.app.get(DataSource);
        const auditJobs = (await c.app.get(JobsService).list({ kind: 'audit' })).filter(
          (j) => j.payload.auditId === audit.id,
        );
        const siteResults: AuditSiteResult[] = [];
        for (const [k, siteId] of ids.entries()) {
          const job = auditJobs.find((j) => j.siteId === siteId)!;
          const out = await upload(
            c,
            siteId,
            job.id,
            Buffer.from(JSON.stringify(answers[k])),
            'scores',
            'job-output',
          );
          await data
            .getRepository(Job)
            .update(
              { id: job.id },
              { state: 'done', result: { outputs: [out] } as never, finishedAt: c.clock.now() },
            );
          const site = audit.siteResults.find((r) => r.siteId === siteId)!;
          siteResults.push({
            ...site,
            jobId: job.id,
            state: 'scored',
            scoresSha256: out.sha256,
            threshold: answers[k]!.threshold,
            flagged: flaggedOf(answers[k]!),
            maxScore: Math.max(...answers[k]!.scores),
            scoreHistogram: histogram(answers[k]!.scores),
            referenceHistogram: histogram(answers[k]!.reference),
            referenceCount: answers[k]!.reference.length,
          });
        }
        await data
          .getRepository(Audit)
          .update({ id: audit.id }, { siteResults, revision: audit.revision + 1 } as never);
        await c.dispose();
        c = undefined;

        c = await startTestCoordinator(dialect, { database });
        await c.app.get(AuditsService).settled();
        const resumed = await c.app.get(AuditsService).get(audit.id);
        assert.equal(resumed.state, 'scored', resumed.error ?? '');
        const expected = [...new Set(answers.flatMap((a) => a.flagged))].sort((a, b) => a - b);
        assert.ok(expected.length > 0 && expected.length < n);
        assert.deepEqual(resumed.combined!.withheld, expected);
        assert.deepEqual(
          resumed.combined!.maxScores,
          answers[0]!.scores.map((s, i) => Math.max(s, answers[1]!.scores[i]!) + 0), // JSON has no -0
        );
      } finally {
        await c?.dispose();
        await database.dispose();
        await rm(root, { recursive: true, force: true });
      }
    });
  });
}
