// Studies against a real coordinator (SQLite file; PostgreSQL schema when configured) and the real JobsService:
// the tests play the sites' side through JobsService (claim, accept, upload real weights blobs, complete) and
// check the rounds, FedAvg numbers, local mode, deadlines, failure, restarts, the pool and the REST API.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { decodeWeights, encodeWeights } from '@fedsynth/common/ml/weights/index';
import { BlobsService } from '../blobs/blobs.service.js';
import { ManualClock } from '../core/clock.js';
import type { Job } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { SitesService } from '../sites/sites.service.js';
import { newSiteKey, signEnrollmentProof } from '../testing/enrollment-proof.js';
import { startTestCoordinator, type TestCoordinator } from '../testing/test-coordinator.js';
import { createTestDatabase, testDialects, type TestDatabase } from '../testing/test-database.js';
import { StudiesService } from './studies.service.js';
import { StudyEvents } from './study-events.js';
import { StudyOrchestrator } from './study-orchestrator.js';
import type { Study } from './study.entity.js';

const ARCH = { name: 'tiny-test', config: { units: 3 } };

/** A real weights blob of one float32 tensor. */
function weightsBlob(values: number[], sampleCount = 1): Buffer {
  return encodeWeights(
    [{ name: 'w', shape: [values.length], dtype: 'float32', data: Float32Array.from(values) }],
    {
      architecture: ARCH,
      sampleCount,
      createdAt: '2030-01-01T00:00:00.000Z',
    },
  );
}

const SEGMENTER = { task: 'segmenter', model: 'unet', profile: 'tiny' } as const;
const GENERATOR = { task: 'generator', model: 'stylegan2', profile: 'tiny' } as const;

for (const dialect of testDialects()) {
  describe(`studies (${dialect})`, () => {
    let db: TestDatabase;
    let c: TestCoordinator;
    const clock = new ManualClock(Date.parse('2030-01-01T00:00:00Z'));
    let transfers = 0;

    const jobs = () => c.app.get(JobsService);
    const studies = () => c.app.get(StudiesService);
    const orchestrator = () => c.app.get(StudyOrchestrator);
    const start = () => startTestCoordinator(dialect, { database: db, clock });

    async function activeSite(name: string): Promise<string> {
      const sites = c.app.get(SitesService);
      const minted = await sites.create(name);
      const key = await newSiteKey();
      const proof = await signEnrollmentProof({
        key,
        enrollmentToken: minted.enrollmentToken,
        siteId: minted.site.id,
        audience: c.config.audience,
        iat: clock.nowSeconds(),
      });
      await sites.enroll(proof);
      return minted.site.id;
    }

    /** The site's unfinished job of the study (kind), as the gateway would offer it. */
    async function jobOf(siteId: string, studyId: string, kind: 'train-round' | 'sample'): Promise<Job> {
      const open = await jobs().list({ siteId, studyId, kind, state: ['queued', 'assigned', 'running'] });
      assert.equal(open.length, 1, `one open ${kind} job for site ${siteId}`);
      return open[0]!;
    }

    /** Uploads bytes as the site's output of the job (stored and recorded like the transfer receiver does). */
    async function upload(siteId: string, job: Job, role: string, kind: string, data: Buffer) {
      const blobs = c.app.get(BlobsService);
      const blob = await blobs.store.putStream(Readable.from([data]));
      await blobs.recordUpload({
        siteId,
        transferId: `t-${++transfers}`,
        kind,
        blob,
        jobId: job.id,
        role,
        meta: { jobId: job.id, attempt: job.attempt, role },
      });
      return { role, sha256: blob.sha256, size: blob.size };
    }

    /** Plays one site's train-round job: accept, upload weights (+ ema), result with trainSlices. */
    async function train(
      siteId: string,
      studyId: string,
      o: { weights: number[]; ema?: number[]; trainSlices: number; manifestCount?: number },
    ): Promise<Job> {
      const job = await jobOf(siteId, studyId, 'train-round');
      await jobs().accept(siteId, job.id, job.attempt);
      const outputs = [
        await upload(siteId, job, 'weights', 'round-update', weightsBlob(o.weights, o.manifestCount)),
      ];
      if (o.ema) outputs.push(await upload(siteId, job, 'ema', 'round-update', weightsBlob(o.ema)));
      return jobs().complete(siteId, {
        jobId: job.id,
        attempt: job.attempt,
        outputs,
        metrics: { trainSlices: o.trainSlices, steps: 2, finalLoss: 0.5, seconds: 1 },
      });
    }

    async function sample(siteId: string, studyId: string, count: number): Promise<Job> {
      const job = await jobOf(siteId, studyId, 'sample');
      await jobs().accept(siteId, job.id, job.attempt);
      const data = Buffer.from(`slices of ${siteId} (${count})`);
      const output = await upload(siteId, job, 'samples', 'samples', data);
      return jobs().complete(siteId, {
        jobId: job.id,
        attempt: job.attempt,
        outputs: [output],
        metrics: { count },
      });
    }

    async function tensorOf(sha256: string): Promise<number[]> {
      const decoded = decodeWeights(await readFile(c.app.get(BlobsService).store.pathOf(sha256)));
      return [...decoded.tensors[0]!.data];
    }

    const settle = (id: string) => orchestrator().advance(id);
    const roundsOf = (id: string) => studies().roundsOf(id);

    let a: string;
    let b: string;
    let s3: string;
    let pending: string;

    before(async () => {
      db = await createTestDatabase(dialect);
      c = await start();
      a = await activeSite('site-a');
      b = await activeSite('site-b');
      s3 = await activeSite('site-c');
      pending = (await c.app.get(SitesService).create('site-pending')).site.id;
    });
    after(async () => {
      await c?.dispose();
      await db?.dispose();
    });

    it('fedavg: averages weights and EMA by trainSlices, feeds them to the next round, ends with the model', async () => {
      const study = await studies().create({
        name: 'seg-fedavg',
        model: SEGMENTER,
        rounds: 2,
        localSteps: 3,
        batchSize: 2,
        siteIds: [a, b],
        seed: 7,
      });
      const [r0] = await roundsOf(study.id);
      const jobA = await jobOf(a, study.id, 'train-round');
      assert.deepEqual(jobA.payload, {
        studyId: study.id,
        round: 0,
        model: SEGMENTER,
        localSteps: 3,
        batchSize: 2,
        seed: 7,
      });
      assert.deepEqual(jobA.inputs, [], 'round 0 starts from scratch');
      assert.equal(jobA.roundId, r0!.id);

      // manifest sample counts disagree with trainSlices on purpose: trainSlices is the weight
      await train(a, study.id, { weights: [1, 2, 3], ema: [0, 0, 0], trainSlices: 1, manifestCount: 100 });
      await settle(study.id);
      assert.equal((await roundsOf(study.id)).length, 1, 'the round waits for site b');
      await train(b, study.id, { weights: [5, 6, 7], ema: [4, 4, 4], trainSlices: 3, manifestCount: 1 });
      await settle(study.id);

      const [closed, r1] = await roundsOf(study.id);
      assert.equal(closed!.state, 'done');
      assert.deepEqual(closed!.contributors, [a, b]);
      assert.equal(closed!.contributions[b]!.trainSlices, 3);
      assert.deepEqual(await tensorOf(closed!.outputWeightsSha256!), [4, 5, 6]); // (1·1 + 5·3) / 4, ...
      assert.deepEqual(await tensorOf(closed!.outputEmaSha256!), [3, 3, 3]);
      const records = await c.app.get(BlobsService).findBySha256(closed!.outputWeightsSha256!);
      assert.ok(records.some((r) => r.kind === 'global-weights' && r.siteId === null && r.meta.round === 0));

      assert.equal(r1!.inputWeightsSha256, closed!.outputWeightsSha256);
      const next = await jobOf(b, study.id, 'train-round');
      assert.equal(next.payload.round, 1);
      assert.deepEqual(
        next.inputs.map((i) => [i.role, i.sha256, i.kind]),
        [
          ['global-weights', closed!.outputWeightsSha256, 'global-weights'],
          ['ema', closed!.outputEmaSha256, 'global-weights'],
        ],
      );

      // the last round ends through JobEvents alone (no explicit step)
      const done = new Promise<Study>((resolve) =>
        c.app.get(StudyEvents).once('studyDone', (e) => e.study.id === study.id && resolve(e.study)),
      );
      await train(a, study.id, { weights: [2, 2, 2], trainSlices: 1 });
      await train(b, study.id, { weights: [4, 4, 4], trainSlices: 1 });
      const finished = await done;
      assert.equal(finished.state, 'done');
      const last = (await roundsOf(study.id))[1]!;
      assert.deepEqual(await tensorOf(last.outputWeightsSha256!), [3, 3, 3]);
      assert.equal(last.outputEmaSha256, null, 'no EMA when the sites sent none');
      assert.equal(finished.modelSha256, last.outputWeightsSha256);
      const model = await c.app.get(BlobsService).findBySha256(finished.modelSha256!);
      assert.ok(model.some((r) => r.kind === 'segmenter' && r.meta.studyId === study.id));
      assert.deepEqual(await studies().finalWeightsOf(study.id), {
        mode: 'fedavg',
        global: { weights: last.outputWeightsSha256, ema: null },
        bySite: {
          [a]: { weights: last.contributions[a]!.weightsSha256, ema: null },
          [b]: { weights: last.contributions[b]!.weightsSha256, ema: null },
        },
      });
      const metrics = await c.app.get(MetricsService).render();
      assert.match(
        metrics,
        new RegExp(`fedsynth_rounds_total\\{study="${study.id}",outcome="completed"\\} 2`),
      );
      assert.match(metrics, /fedsynth_round_duration_seconds_count\{mode="fedavg"\} [1-9]/);
      assert.match(metrics, /fedsynth_studies\{state="done"\} [1-9]/);
    });

    it('local: each site keeps its own weights, samples from them, and the pool gets each site once', async () => {
      const study = await studies().create({
        name: 'gen-local',
        model: GENERATOR,
        mode: 'local',
        rounds: 2,
        localSteps: 1,
        batchSize: 1,
        samplesPerSite: 5,
        siteIds: [a, b],
        seed: 11,
        truncationPsi: 0.7,
      });
      await train(a, study.id, { weights: [1, 1], trainSlices: 10 });
      await train(b, study.id, { weights: [9, 9], trainSlices: 1 });
      await settle(study.id);
      const [r0] = await roundsOf(study.id);
      assert.equal(r0!.outputWeightsSha256, null, 'nothing is averaged in local mode');
      const jobA1 = await jobOf(a, study.id, 'train-round');
      const jobB1 = await jobOf(b, study.id, 'train-round');
      assert.deepEqual(
        await tensorOf(jobA1.inputs[0]!.sha256),
        [1, 1],
        'site a continues from its own weights',
      );
      assert.deepEqual(await tensorOf(jobB1.inputs[0]!.sha256), [9, 9]);
      await train(a, study.id, { weights: [2, 2], trainSlices: 10 });
      await train(b, study.id, { weights: [8, 8], trainSlices: 1 });
      await settle(study.id);

      let s = await studies().get(study.id);
      assert.equal(s.state, 'sampling');
      const sampleA = await jobOf(a, study.id, 'sample');
      const sampleB = await jobOf(b, study.id, 'sample');
      assert.equal(sampleA.payload.n, 5);
      assert.equal(sampleA.payload.truncationPsi, 0.7);
      assert.notEqual(sampleA.payload.seed, sampleB.payload.seed, 'each site draws with its own seed');
      assert.deepEqual(
        sampleA.inputs.map((i) => i.role),
        ['weights'],
      );
      assert.deepEqual(await tensorOf(sampleA.inputs[0]!.sha256), [2, 2]);
      assert.deepEqual(await tensorOf(sampleB.inputs[0]!.sha256), [8, 8]);

      await sample(a, study.id, 5);
      await settle(study.id);
      await settle(study.id);
      assert.equal((await studies().poolOf(study.id)).length, 1);
      assert.equal((await studies().get(study.id)).state, 'sampling', 'waits for site b');
      await sample(b, study.id, 4);
      await settle(study.id);
      await settle(study.id);
      s = await studies().get(study.id);
      assert.equal(s.state, 'done');
      const pool = await studies().poolOf(study.id);
      assert.deepEqual(
        pool.map((p) => [p.siteId, p.count, p.generator, p.round]).sort(),
        [
          [a, 5, 'stylegan2', 1],
          [b, 4, 'stylegan2', 1],
        ].sort(),
      );
      assert.equal(pool.find((p) => p.siteId === a)!.seed, sampleA.payload.seed);
      assert.equal((await jobs().list({ studyId: study.id, kind: 'sample' })).length, 2);
    });

    it('closes a round at the deadline with minSites; the late site gets the next round\u2019s job', async () => {
      const study = await studies().create({
        name: 'deadline',
        model: SEGMENTER,
        rounds: 3,
        localSteps: 1,
        batchSize: 1,
        siteIds: [a, b, s3],
        minSites: 2,
        roundTimeoutMs: 60_000,
      });
      await train(a, study.id, { weights: [1], trainSlices: 1 });
      await train(b, study.id, { weights: [3], trainSlices: 1 });
      const late = await jobOf(s3, study.id, 'train-round');
      await settle(study.id);
      assert.equal((await roundsOf(study.id))[0]!.state, 'open', 'before the deadline it waits for everyone');
      clock.advance(60_000);
      await orchestrator().tick();
      const [r0, r1] = await roundsOf(study.id);
      assert.equal(r0!.state, 'done');
      assert.deepEqual(r0!.contributors, [a, b]);
      assert.deepEqual(await tensorOf(r0!.outputWeightsSha256!), [2]);
      const cancelled = await jobs().get(late.id);
      assert.equal(cancelled.state, 'failed');
      assert.equal(cancelled.error?.code, 'cancelled');
      assert.deepEqual(r1!.participants, [a, b, s3], 'every selected site rejoins');
      const rejoin = await jobOf(s3, study.id, 'train-round');
      assert.equal(rejoin.roundId, r1!.id);
      assert.equal(rejoin.inputs[0]!.sha256, r0!.outputWeightsSha256);

      // round 1: the deadline passes with one site only: it keeps waiting, then closes with the second
      await train(s3, study.id, { weights: [10], trainSlices: 1 });
      clock.advance(60_000);
      await orchestrator().tick();
      await orchestrator().tick();
      assert.equal((await roundsOf(study.id))[1]!.state, 'open');
      await train(a, study.id, { weights: [20], trainSlices: 3 });
      await settle(study.id);
      const r1done = (await roundsOf(study.id))[1]!;
      assert.equal(r1done.state, 'done');
      assert.deepEqual(r1done.contributors, [a, s3]);
      assert.deepEqual(await tensorOf(r1done.outputWeightsSha256!), [17.5]); // (20·3 + 10·1) / 4
      await studies().cancel(study.id);
      assert.equal((await studies().get(study.id)).state, 'cancelled');
      assert.equal((await jobs().list({ studyId: study.id, state: 'queued' })).length, 0);
    });

    it('fails the study when minSites can no longer be reached', async () => {
      const study = await studies().create({
        name: 'unreachable',
        model: GENERATOR,
        rounds: 2,
        localSteps: 1,
        batchSize: 1,
        samplesPerSite: 2,
        siteIds: [a, b],
        minSites: 2,
      });
      const failed = new Promise<Study>((resolve) =>
        c.app.get(StudyEvents).once('studyFailed', (e) => e.study.id === study.id && resolve(e.study)),
      );
      const job = await jobOf(a, study.id, 'train-round');
      await jobs().accept(a, job.id, job.attempt);
      await jobs().fail(a, {
        jobId: job.id,
        attempt: job.attempt,
        code: 'oom',
        message: 'out of memory',
        retryable: false,
      });
      const s = await failed;
      assert.equal(s.state, 'failed');
      assert.match(s.error!, /minSites = 2/);
      assert.match(s.error!, /oom/);
      const other = (await jobs().list({ studyId: study.id, siteId: b }))[0]!;
      assert.equal(other.state, 'failed', "the other site's job is cancelled");
    });

    it('continues after a restart mid-round and mid-sampling without duplicating jobs or pool rows', async () => {
      const study = await studies().create({
        name: 'restart',
        model: GENERATOR,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        samplesPerSite: 3,
        siteIds: [a, b],
      });
      await train(a, study.id, { weights: [2, 4], trainSlices: 1 });
      await settle(study.id);
      await c.dispose();
      c = await start();
      await settle(study.id);
      assert.equal((await jobs().list({ studyId: study.id, kind: 'train-round' })).length, 2, 'no new jobs');
      await train(b, study.id, { weights: [4, 8], trainSlices: 1 });
      await settle(study.id);
      const [r0] = await roundsOf(study.id);
      assert.deepEqual(await tensorOf(r0!.outputWeightsSha256!), [3, 6]);
      assert.equal((await studies().get(study.id)).state, 'sampling');
      const sampleB = await jobOf(b, study.id, 'sample');
      assert.deepEqual(
        sampleB.inputs.map((i) => [i.role, i.sha256]),
        [['weights', r0!.outputWeightsSha256]],
      );
      await sample(a, study.id, 3);
      await c.dispose();
      c = await start();
      await settle(study.id);
      await settle(study.id);
      assert.equal(
        (await jobs().list({ studyId: study.id, kind: 'sample' })).length,
        2,
        'no new sample jobs',
      );
      assert.equal((await studies().poolOf(study.id)).length, 1);
      await sample(b, study.id, 3);
      await settle(study.id);
      await c.dispose();
      c = await start();
      await settle(study.id);
      const s = await studies().get(study.id);
      assert.equal(s.state, 'done');
      assert.equal((await studies().poolOf(study.id)).length, 2);
      assert.equal((await jobs().list({ studyId: study.id })).length, 4);
    });

    it('REST: roles, validation and views', async () => {
      const admin = await c.tokenFor('admin');
      const auditor = await c.tokenFor('auditor');
      const researcher = await c.tokenFor('researcher');
      const body = {
        name: 'rest',
        model: GENERATOR,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        samplesPerSite: 2,
        siteIds: [a, b],
      };
      assert.equal((await c.request('POST', '/api/studies', { body })).status, 401);
      assert.equal((await c.request('POST', '/api/studies', { body, token: auditor })).status, 403);
      assert.equal((await c.request('POST', '/api/studies', { body, token: researcher })).status, 403);
      assert.equal((await c.request('GET', '/api/studies', { token: researcher })).status, 403);

      const refused = async (patch: Record<string, unknown>, message: RegExp) => {
        const res = await c.request('POST', '/api/studies', { body: { ...body, ...patch }, token: admin });
        assert.equal(res.status, 400, JSON.stringify(patch));
        assert.match(JSON.stringify(res.body), message);
      };
      await refused({ minSites: 3 }, /minSites \(3\) exceeds/);
      await refused({ samplesPerSite: 0 }, /samplesPerSite must be > 0/);
      await refused({ model: SEGMENTER }, /samplesPerSite must be 0/);
      await refused({ siteIds: [a, crypto.randomUUID()] }, /no site/);
      await refused({ siteIds: [a, pending] }, /site-pending is pending/);
      await refused({ siteIds: [a, a] }, /listed twice/);
      await refused({ rounds: 0 }, /rounds/);
      await refused({ extra: 1 }, /extra|Unrecognized/i);
      await refused({ model: { task: 'generator', model: 'gpt', profile: 'tiny' } }, /model/);
      await refused(
        { model: SEGMENTER, samplesPerSite: 0, data: { syntheticShare: 0.5 } },
        /syntheticPoolSha256 \(the pool\) is required/,
      );
      await refused(
        { model: SEGMENTER, samplesPerSite: 0, syntheticPoolSha256: 'f'.repeat(64) },
        /not stored/,
      );

      const created = await c.request('POST', '/api/studies', { body, token: admin });
      assert.equal(created.status, 201);
      assert.equal(created.body.state, 'running');
      assert.equal(created.body.minSites, 2);
      assert.equal(created.body.roundHistory.length, 1);
      assert.deepEqual(created.body.roundHistory[0].participants, [a, b]);
      const id = created.body.id as string;
      const got = await c.request('GET', `/api/studies/${id}`, { token: auditor });
      assert.equal(got.status, 200);
      assert.deepEqual(got.body.pool, { total: 0, sites: [] });
      const listed = await c.request('GET', '/api/studies', { token: auditor });
      assert.ok(listed.body.some((s: { id: string }) => s.id === id));
      assert.equal(
        (await c.request('GET', `/api/studies/${crypto.randomUUID()}`, { token: admin })).status,
        404,
      );
      assert.equal((await c.request('POST', `/api/studies/${id}/cancel`, { token: auditor })).status, 403);
      const cancelled = await c.request('POST', `/api/studies/${id}/cancel`, { token: admin });
      assert.equal(cancelled.status, 200);
      assert.equal(cancelled.body.state, 'cancelled');
      const left = await jobs().list({ studyId: id });
      assert.ok(
        left.length === 2 && left.every((j) => j.state === 'failed' && j.error?.code === 'cancelled'),
      );
    });
  });
}
