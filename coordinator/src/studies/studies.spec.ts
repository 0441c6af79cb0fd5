// Studies against a real coordinator (SQLite file; PostgreSQL schema when configured) and the real JobsService:
// the tests play the sites' side through JobsService (claim, accept, upload real weights blobs, complete) and
// check the rounds, FedAvg numbers, local mode, deadlines, failure, restarts, the pool and the REST API.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { getRepositoryToken } from '@nestjs/typeorm';
import { studyModelArchitecture } from '@fedsynth/common/ml/jobs/federated-jobs';
import { modelInputSize } from '@fedsynth/common/ml/jobs/job-files';
import { decodeWeights, encodeWeights, fedAvg } from '@fedsynth/common/ml/weights/index';
import { SLICE_CHANNELS, SliceStoreWriter } from '@fedsynth/common/slices/index';
import type { Repository } from 'typeorm';
import { BlobsService } from '../blobs/blobs.service.js';
import { ManualClock } from '../core/clock.js';
import type { Job } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { SiteSession } from '../federation/site-session.entity.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { SitesService } from '../sites/sites.service.js';
import { newSiteKey, signEnrollmentProof } from '../testing/enrollment-proof.js';
import { startTestCoordinator, type TestCoordinator } from '../testing/test-coordinator.js';
import { createTestDatabase, testDialects, type TestDatabase } from '../testing/test-database.js';
import { StudiesService } from './studies.service.js';
import { StudyEvents } from './study-events.js';
import { StudyOrchestrator } from './study-orchestrator.js';
import { GIVE_UP_AFTER_ROUND_TIMEOUTS } from './study-orchestrator.js';
import { Study } from './study.entity.js';

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

let stores = 0;
/** A real slice store of `count` slices (size², the given channels) in `scratch`, as a site's sampler writes it. */
async function sliceStore(
  scratch: string,
  count: number,
  size: number,
  channels: readonly string[] = SLICE_CHANNELS,
): Promise<Buffer> {
  const file = path.join(scratch, `samples-${++stores}.fss`);
  const writer = await SliceStoreWriter.create(file, {
    preset: 'cpu16',
    scale: 'max',
    size,
    channels: [...channels],
    dtype: 'uint8',
    layout: 'NHWC',
    annotation: { NCR: 51, ED: 102, ET: 204 },
    split: { seed: 0, testFraction: 0 },
    createdAt: '2030-01-01T00:00:00.000Z',
  });
  const slices = new Uint8Array(count * size * size * channels.length);
  for (let i = 0; i < slices.length; i++) slices[i] = (i * 31 + stores) & 0xff;
  await writer.addSubject(
    {
      id: `synthetic-${stores}`,
      split: 'train',
      labelled: true,
      z: Array.from({ length: count }, (_, i) => i),
      sourceDims: [size, size, 1],
      reference: {},
    },
    slices,
  );
  await writer.close();
  return readFile(file);
}

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

    /** Plays one site's sample job: a real slice store of `count` slices (or the given bytes) and its count. */
    async function sample(siteId: string, studyId: string, count: number, data?: Buffer): Promise<Job> {
      const job = await jobOf(siteId, studyId, 'sample');
      await jobs().accept(siteId, job.id, job.attempt);
      const output = await upload(
        siteId,
        job,
        'samples',
        'samples',
        data ?? (await sliceStore(scratch, count, genSize)),
      );
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
    let genSize: number;
    let scratch: string; // per suite: the dialects' suites run concurrently

    before(async () => {
      scratch = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-studies-'));
      genSize = modelInputSize(await studyModelArchitecture(GENERATOR));
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
      await rm(scratch, { recursive: true, force: true });
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
        rounds: 2,
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
      // the worker's average is byte for byte common's fedAvg on the main thread
      const blobOf = (sha: string) => readFile(c.app.get(BlobsService).store.pathOf(sha));
      const inProcess = fedAvg(
        await Promise.all(
          [a, b].map(async (site) => {
            const contribution = closed!.contributions[site]!;
            const decoded = decodeWeights(await blobOf(contribution.weightsSha256));
            return {
              manifest: { ...decoded.manifest, sampleCount: contribution.trainSlices },
              tensors: decoded.tensors,
              blobSha256: decoded.blobSha256,
              source: `site ${site} round 0 weights`,
            };
          }),
        ),
        { provenance: { studyId: study.id, round: 0, role: 'weights' }, createdAt: closed!.startedAt },
      );
      assert.equal(createHash('sha256').update(inProcess).digest('hex'), closed!.outputWeightsSha256);
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
      await sample(b, study.id, 5);
      await settle(study.id);
      await settle(study.id);
      s = await studies().get(study.id);
      assert.equal(s.state, 'done');
      const pool = await studies().poolOf(study.id);
      assert.deepEqual(
        pool.map((p) => [p.siteId, p.count, p.generator, p.round]).sort(),
        [
          [a, 5, 'stylegan2', 1],
          [b, 5, 'stylegan2', 1],
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

    it('averages in a worker: weights that do not average fail the study with the reason', async () => {
      const study = await studies().create({
        name: 'mismatch',
        model: SEGMENTER,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        siteIds: [a, b],
      });
      await train(a, study.id, { weights: [1, 2, 3], trainSlices: 1 });
      await train(b, study.id, { weights: [1, 2], trainSlices: 1 });
      await settle(study.id);
      const s = await studies().get(study.id);
      assert.equal(s.state, 'failed');
      assert.match(
        s.error!,
        /round 0: averaging the weights failed: .*tensor "w" is \[2\] float32, expected \[3\]/,
      );
    });

    it('sampling deadline: pending sample jobs are cancelled; done with minSites, else failed naming the sites', async () => {
      const make = (name: string) =>
        studies().create({
          name,
          model: GENERATOR,
          rounds: 1,
          localSteps: 1,
          batchSize: 1,
          samplesPerSite: 3,
          siteIds: [a, b, s3],
          minSites: 2,
          roundTimeoutMs: 60_000,
        });
      const enough = await make('sampling-deadline');
      const short = await make('sampling-deadline-short');
      for (const id of [enough.id, short.id]) {
        for (const site of [a, b, s3]) await train(site, id, { weights: [1], trainSlices: 1 });
        await settle(id);
        assert.equal((await studies().get(id)).state, 'sampling');
      }
      await sample(a, enough.id, 3);
      await sample(b, enough.id, 3);
      await sample(a, short.id, 3);
      const lateEnough = await jobOf(s3, enough.id, 'sample');
      await settle(enough.id);
      await settle(short.id);
      assert.equal((await studies().get(enough.id)).state, 'sampling', 'before the deadline it waits for s3');
      assert.equal((await studies().get(short.id)).state, 'sampling');

      clock.advance(60_000);
      await orchestrator().tick();
      const done = await studies().get(enough.id);
      assert.equal(done.state, 'done');
      assert.deepEqual((await studies().poolOf(enough.id)).map((p) => p.siteId).sort(), [a, b].sort());
      const cancelled = await jobs().get(lateEnough.id);
      assert.equal(cancelled.state, 'failed');
      assert.equal(cancelled.error?.code, 'cancelled');
      assert.match(cancelled.error!.message, /sampling deadline/);

      const failed = await studies().get(short.id);
      assert.equal(failed.state, 'failed');
      assert.match(failed.error!, /1 site\(s\) delivered usable samples but the study needs minSites = 2/);
      assert.match(failed.error!, new RegExp(`site ${b}: no samples before the sampling deadline`));
      assert.match(failed.error!, new RegExp(`site ${s3}: no samples before the sampling deadline`));
      assert.doesNotMatch(failed.error!, new RegExp(`site ${a}:`));
      const open = await jobs().list({ studyId: short.id, state: ['queued', 'assigned', 'running'] });
      assert.equal(open.length, 0);
    });

    it(`fails a training round stuck below minSites ${GIVE_UP_AFTER_ROUND_TIMEOUTS} round timeouts after it opened`, async () => {
      const study = await studies().create({
        name: 'stuck',
        model: SEGMENTER,
        rounds: 2,
        localSteps: 1,
        batchSize: 1,
        siteIds: [a, b, s3],
        minSites: 2,
        roundTimeoutMs: 60_000,
      });
      await train(a, study.id, { weights: [1], trainSlices: 1 });
      const stuckB = await jobOf(b, study.id, 'train-round');
      clock.advance(60_000);
      await orchestrator().tick();
      assert.equal((await studies().get(study.id)).state, 'running', 'past the deadline it still waits');
      clock.advance((GIVE_UP_AFTER_ROUND_TIMEOUTS - 1) * 60_000 - 1);
      await orchestrator().tick();
      assert.equal((await studies().get(study.id)).state, 'running', 'just before the hard limit');
      clock.advance(1);
      await orchestrator().tick();
      const s = await studies().get(study.id);
      assert.equal(s.state, 'failed');
      assert.match(s.error!, /round 0: 1 of the 2 site\(s\) needed contributed within 3 × roundTimeoutMs/);
      assert.match(s.error!, new RegExp(`no result from site\\(s\\) ${b}, ${s3}`));
      assert.equal((await jobs().get(stuckB.id)).error?.code, 'cancelled');
    });

    it('start-up cancels unfinished jobs of studies that ended before their jobs were cancelled', async () => {
      const ended = await studies().create({
        name: 'ended-mid-cancel',
        model: SEGMENTER,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        siteIds: [a, b],
      });
      const live = await studies().create({
        name: 'still-live',
        model: SEGMENTER,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        siteIds: [a, b],
      });
      const running = await jobOf(a, ended.id, 'train-round');
      await jobs().accept(a, running.id, running.attempt);
      // what end() leaves after a crash between storing the state and cancelling the jobs
      const repo = c.app.get<Repository<Study>>(getRepositoryToken(Study));
      await repo.update({ id: ended.id }, { state: 'failed', error: 'crashed', finishedAt: clock.now() });
      await c.dispose();
      c = await start();
      const left = await jobs().list({ studyId: ended.id });
      assert.equal(left.length, 2);
      for (const job of left) {
        assert.equal(job.state, 'failed', `job ${job.id}`);
        assert.equal(job.error?.code, 'cancelled');
        assert.match(job.error!.message, /study ended-mid-cancel is failed/);
      }
      const liveJobs = await jobs().list({ studyId: live.id });
      assert.equal(liveJobs.length, 2);
      assert.ok(
        liveJobs.every((j) => j.state === 'queued'),
        'jobs of a live study are left alone',
      );
      assert.equal(await orchestrator().cancelOrphanJobs(), 0, 'nothing left to cancel');
      await studies().cancel(live.id);
    });

    it('refuses sample stores that are malformed, of another size, count or channels', async () => {
      const pooling = await studies().create({
        name: 'pool-checks',
        model: GENERATOR,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        samplesPerSite: 3,
        siteIds: [a, b, s3],
        minSites: 1,
      });
      for (const site of [a, b, s3]) await train(site, pooling.id, { weights: [1], trainSlices: 1 });
      await settle(pooling.id);
      await sample(a, pooling.id, 3, Buffer.from('three slices, honestly'));
      await sample(b, pooling.id, 3, await sliceStore(scratch, 3, genSize * 2));
      await sample(s3, pooling.id, 2); // the site's pre-check withheld one of the 3 drawn: fewer is fine
      await settle(pooling.id);
      await settle(pooling.id);
      const done = await studies().get(pooling.id);
      assert.equal(done.state, 'done');
      const pool = await studies().poolOf(pooling.id);
      assert.deepEqual(
        pool.map((p) => [p.siteId, p.count]),
        [[s3, 2]],
      );

      const refused = await studies().create({
        name: 'pool-refused',
        model: GENERATOR,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        samplesPerSite: 3,
        siteIds: [a, b, s3],
        minSites: 1,
      });
      for (const site of [a, b, s3]) await train(site, refused.id, { weights: [1], trainSlices: 1 });
      await settle(refused.id);
      await sample(a, refused.id, 4); // a store of 4 slices, reported as 4; the job asked for 3
      await sample(b, refused.id, 3, await sliceStore(scratch, 3, genSize, ['t1', 't2', 'flair', 't1ce']));
      await sample(s3, refused.id, 4, await sliceStore(scratch, 3, genSize)); // claims 4
      await settle(refused.id);
      const failed = await studies().get(refused.id);
      assert.equal(failed.state, 'failed');
      assert.match(failed.error!, /0 site\(s\) delivered usable samples/);
      assert.match(
        failed.error!,
        new RegExp(`site ${a}: the samples store holds 4 slices, the job asked for n = 3`),
      );
      assert.match(
        failed.error!,
        new RegExp(`site ${b}: the samples have channels \\[t1, t2, flair, t1ce\\]`),
      );
      assert.match(failed.error!, new RegExp(`site ${s3}: .*metrics.count says 4`));
      assert.equal((await studies().poolOf(refused.id)).length, 0);
    });

    it("bounds trainSlices by the site's reported training slices, else the configured maximum", async () => {
      const sessions = c.app.get<Repository<SiteSession>>(getRepositoryToken(SiteSession));
      const now = clock.now();
      await sessions.insert({
        id: crypto.randomUUID(),
        siteId: a,
        socketId: 'sock-a',
        connectedAt: now,
        helloAt: now,
        disconnectedAt: now,
        disconnectReason: 'test',
        protocolVersion: 1,
        agentVersion: 'test',
        capabilities: { backends: [], accelerators: [], cores: 1, memoryMb: 1, jobKinds: [] } as never,
        dataset: { cases: 2, trainCases: 2, testCases: 0, slices: 100, trainSlices: 100, testSlices: 0 },
        remoteAddress: null,
      });
      const over = await studies().create({
        name: 'bounded',
        model: SEGMENTER,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        siteIds: [a, b],
        minSites: 1,
      });
      await train(a, over.id, { weights: [1], trainSlices: 101 });
      await train(b, over.id, { weights: [3], trainSlices: 1_000_001 });
      await settle(over.id);
      const failed = await studies().get(over.id);
      assert.equal(failed.state, 'failed');
      assert.match(
        failed.error!,
        new RegExp(
          `site ${a}: refused: metrics.trainSlices 101 exceeds 100, the training slices the site reported`,
        ),
      );
      assert.match(
        failed.error!,
        new RegExp(`site ${b}: refused: metrics.trainSlices 1000001 exceeds 1000000, the configured maximum`),
      );

      const within = await studies().create({
        name: 'within-bounds',
        model: SEGMENTER,
        rounds: 1,
        localSteps: 1,
        batchSize: 1,
        siteIds: [a, b],
      });
      await train(a, within.id, { weights: [1], trainSlices: 100 });
      await train(b, within.id, { weights: [3], trainSlices: 300 });
      await settle(within.id);
      const [r0] = await roundsOf(within.id);
      assert.deepEqual(r0!.contributors, [a, b]);
      assert.deepEqual(await tensorOf(r0!.outputWeightsSha256!), [2.5]); // (1·100 + 3·300) / 400
      await sessions.delete({ siteId: a });
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
      await refused({ samplesPerSite: 100_001 }, /samplesPerSite/);
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
