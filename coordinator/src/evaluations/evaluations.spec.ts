// Central segmentation, federated evaluation and the comparison report against a real database (SQLite file;
// PostgreSQL schema when configured): real phantom slices merged into a pool, a real tiny U-Net trained with
// common's trainSegmenter in worker threads, sites played through JobsService (accept/complete) with summaries
// computed by the real evaluator, and a coordinator restart. The studies side (a generator study's pool, FedAvg
// segmenter studies) is played by a StudyGateway bound with STUDY_GATEWAY_OVERRIDE: those studies would need
// whole federated trainings here, which engineer A's specs cover.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Global, Module } from '@nestjs/common';
import { evaluateSegmenterModel } from '@fedsynth/common/ml/jobs/index';
import { decodeWeights } from '@fedsynth/common/ml/weights/index';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import type { EvaluationSummary } from '@fedsynth/common/protocol/index';
import { buildSliceStore, SliceStoreReader, SliceStoreWriter } from '@fedsynth/common/slices/index';
import { BlobsService } from '../blobs/blobs.service.js';
import { JobsService } from '../jobs/jobs.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { ReleaseEvidence } from '../releases/release-evidence.js';
import { SitesService } from '../sites/sites.service.js';
import { newSiteKey, signEnrollmentProof } from '../testing/enrollment-proof.js';
import { startTestCoordinator, type TestCoordinator } from '../testing/test-coordinator.js';
import { testDialects } from '../testing/test-database.js';
import type { ScoreTable } from './evaluation.entities.js';
import { SCORE_KEYS } from './evaluation-aggregate.js';
import { EvaluationsService } from './evaluations.service.js';
import { mergeSliceStores, PoolMergeError } from './pool-merge.js';
import { INTERRUPTED_ERROR, SegmentationService } from './segmentation.service.js';
import {
  STUDY_GATEWAY_OVERRIDE,
  type PooledSample,
  type SegmenterStudySpec,
  type StudyOutcome,
  StudyGateway,
} from './study-gateway.js';
import { UtilityService } from './utility.service.js';

/** The studies side as the specs play it: pools by study, segmenter studies finished by the test. */
class PlayedStudies extends StudyGateway {
  readonly pools = new Map<string, PooledSample[]>();
  readonly created: Array<SegmenterStudySpec & { id: string }> = [];
  readonly outcomes = new Map<string, StudyOutcome>();
  poolSamples(studyId: string): Promise<PooledSample[]> {
    return Promise.resolve(this.pools.get(studyId) ?? []);
  }
  createSegmenterStudy(spec: SegmenterStudySpec): Promise<string> {
    const id = crypto.randomUUID();
    this.created.push({ ...spec, id });
    this.outcomes.set(id, { state: 'running' });
    return Promise.resolve(id);
  }
  outcome(studyId: string): Promise<StudyOutcome> {
    return Promise.resolve(this.outcomes.get(studyId) ?? { state: 'failed', error: `no study ${studyId}` });
  }
}

const played = new PlayedStudies();

@Global()
@Module({
  providers: [{ provide: STUDY_GATEWAY_OVERRIDE, useValue: played }],
  exports: [STUDY_GATEWAY_OVERRIDE],
})
class PlayedStudiesModule {}

const STUDY = '5b0c6a3e-0000-4000-8000-000000000001';

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A summary from per-subject Dice rows (HD95 = 10 × (1 − Dice)), as a site would send it. */
function summaryOf(rows: ScoreTable[], slicesPerSubject = 5): EvaluationSummary {
  const hd = (t: ScoreTable) =>
    Object.fromEntries(
      SCORE_KEYS.map((k) => [k, t[k] === null ? null : 10 * (1 - t[k]!)]),
    ) as unknown as ScoreTable;
  const mean = (f: (t: ScoreTable) => ScoreTable) =>
    Object.fromEntries(
      SCORE_KEYS.map((k) => {
        const v = rows.map((r) => f(r)[k]).filter((x): x is number => x !== null);
        return [k, v.length ? v.reduce((a, b) => a + b, 0) / v.length : null];
      }),
    ) as unknown as ScoreTable;
  return {
    subjects: rows.length,
    slices: rows.length * slicesPerSubject,
    mean: { dice: mean((t) => t), hd95: mean(hd) },
    perSubject: rows.map((r, i) => ({ subject: i + 1, dice: r, hd95: hd(r) })),
  };
}

const table = (NCR: number | null, ED: number, ET: number, WT: number, TC: number): ScoreTable => ({
  NCR,
  ED,
  ET,
  WT,
  TC,
});

let tmp: string;
let sampleStores: string[];
let heldOut: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-evaluations-'));
  const train = await writePhantomSites({
    out: path.join(tmp, 'p'),
    sites: 1,
    cases: 3,
    seed: 5,
    naming: '2021',
  });
  const all = path.join(tmp, 'all.fss');
  await buildSliceStore({
    dataDir: train.sites[0]!.dir,
    out: all,
    preset: 'cpu32',
    testFraction: 0,
    seed: 1,
  });
  // One "sample store" per phantom subject, as sites upload them after sampling.
  const reader = await SliceStoreReader.open(all);
  sampleStores = [];
  for (const [i, s] of reader.meta.subjects.entries()) {
    const file = path.join(tmp, `samples-${i}.fss`);
    const {
      subjects: _s,
      count: _c,
      sliceBytes: _b,
      dataOffset: _d,
      format: _f,
      version: _v,
      ...init
    } = reader.meta;
    const w = await SliceStoreWriter.create(file, init);
    await w.addSubject(
      {
        id: `synthetic-${i}`,
        split: 'train',
        labelled: true,
        z: s.z,
        sourceDims: s.sourceDims,
        reference: {},
      },
      await reader.readRange(s.first, s.count),
    );
    await w.close();
    sampleStores.push(file);
  }
  await reader.close();
  const held = await writePhantomSites({
    out: path.join(tmp, 'h'),
    sites: 1,
    cases: 2,
    seed: 99,
    naming: '2023',
  });
  heldOut = path.join(tmp, 'held.fss');
  await buildSliceStore({
    dataDir: held.sites[0]!.dir,
    out: heldOut,
    preset: 'cpu32',
    testFraction: 0,
    seed: 1,
  });
});
after(() => rm(tmp, { recursive: true, force: true }));

describe('pool merge', () => {
  it('merges every sample store into one store of training slices and counts them', async () => {
    const counts = await Promise.all(
      sampleStores.map(async (f) => {
        const r = await SliceStoreReader.open(f);
        const n = r.count;
        await r.close();
        return n;
      }),
    );
    const merged = await mergeSliceStores(
      sampleStores.map((file, i) => ({ file, name: `site-${i}` })),
      path.join(tmp, 'merged.fss'),
    );
    assert.equal(
      merged.slices,
      counts.reduce((a, b) => a + b, 0),
    );
    assert.deepEqual(
      merged.perSource.map((p) => p.slices),
      counts,
    );
    const r = await SliceStoreReader.open(merged.file);
    assert.equal(r.count, merged.slices);
    assert.equal(r.indicesOf('train', { labelledOnly: true }).length, merged.slices, 'every slice trains');
    // bytes are copied unchanged: the last source's last slice is the merged store's last slice
    const last = await SliceStoreReader.open(sampleStores.at(-1)!);
    assert.deepEqual(await r.readRange(r.count - 1, 1), await last.readRange(last.count - 1, 1));
    await Promise.all([r.close(), last.close()]);
  });

  it('refuses an empty pool and stores of another size, naming the source', async () => {
    await assert.rejects(mergeSliceStores([], path.join(tmp, 'x.fss')), PoolMergeError);
    const other = path.join(tmp, 'other.fss');
    const w = await SliceStoreWriter.create(other, {
      preset: 'cpu16',
      scale: 'max',
      size: 16,
      channels: ['t1', 't2', 'flair', 't1ce', 'seg'],
      dtype: 'uint8',
      layout: 'NHWC',
      annotation: { NCR: 51, ED: 102, ET: 204 },
      split: { seed: 0, testFraction: 0 },
      createdAt: new Date().toISOString(),
    });
    await w.addSubject(
      { id: 's', split: 'train', labelled: true, z: [0], sourceDims: [16, 16, 1], reference: {} },
      new Uint8Array(16 * 16 * 5),
    );
    await w.close();
    await assert.rejects(
      mergeSliceStores(
        [
          { file: sampleStores[0]!, name: 'site-a' },
          { file: other, name: 'site-b' },
        ],
        path.join(tmp, 'y.fss'),
      ),
      /site-b: slices are 16² but the pool's are 32²/,
    );
  });
});

for (const dialect of testDialects()) {
  describe(`central segmentation, federated evaluation and the report (${dialect})`, () => {
    let c: TestCoordinator;
    let siteA: string;
    let siteB: string;
    let runId: string;
    let weightsSha: string;
    let realSummary: EvaluationSummary;

    async function activeSite(name: string): Promise<string> {
      const sites = c.app.get(SitesService);
      const minted = await sites.create(name);
      const key = await newSiteKey();
      const proof = await signEnrollmentProof({
        key,
        enrollmentToken: minted.enrollmentToken,
        siteId: minted.site.id,
        audience: c.config.audience,
        iat: c.clock.nowSeconds(),
      });
      await sites.enroll(proof);
      return minted.site.id;
    }

    /** Plays a site: takes its waiting evaluate job and answers with `summary`. */
    async function answer(siteId: string, evaluationId: string, summary: unknown): Promise<void> {
      const jobs = c.app.get(JobsService);
      const evaluation = await c.app.get(EvaluationsService).get(evaluationId);
      const jobId = evaluation.sites[siteId]!.jobId;
      const job = await jobs.get(jobId);
      assert.equal(job.kind, 'evaluate');
      assert.deepEqual(
        job.inputs.map((i) => [i.role, i.kind, i.sha256]),
        [['segmenter', 'segmenter', evaluation.weightsSha256]],
      );
      assert.deepEqual(job.payload, { studyId: evaluation.studyId, label: evaluation.label });
      await jobs.accept(siteId, jobId, job.attempt);
      await jobs.complete(siteId, {
        jobId,
        attempt: job.attempt,
        outputs: [],
        summary: summary as never,
      });
    }

    const finished = (id: string) =>
      until(`evaluation ${id}`, async () => {
        const e = await c.app.get(EvaluationsService).get(id);
        return e.state === 'running' ? undefined : e;
      });

    before(async () => {
      c = await startTestCoordinator(dialect, { imports: [PlayedStudiesModule] });
      siteA = await activeSite('eval-a');
      siteB = await activeSite('eval-b');
      const blobs = c.app.get(BlobsService);
      const samples: PooledSample[] = [];
      for (const [i, file] of sampleStores.entries()) {
        const b = await blobs.storeFile(file, { kind: 'samples', meta: { studyId: STUDY } });
        samples.push({ siteId: i % 2 ? siteB : siteA, sha256: b.sha256 });
      }
      played.pools.set(STUDY, samples);
      played.created.length = 0;
      played.outcomes.clear();
    });
    after(() => c?.dispose());

    it('trains a tiny U-Net on the merged pool and stores its weights as a segmenter blob', async () => {
      const segmentation = c.app.get(SegmentationService);
      await assert.rejects(
        segmentation.trainOnPool(crypto.randomUUID(), { model: 'unet', profile: 'tiny', steps: 2 }),
        /no pooled samples/,
      );
      const queued = await segmentation.trainOnPool(STUDY, {
        model: 'unet',
        profile: 'tiny',
        steps: 4,
        batch: 4,
      });
      assert.equal(queued.trainedOn, 'synthetic');
      const run = await segmentation.waitFor(queued.id);
      assert.equal(run.state, 'done', run.error ?? '');
      assert.equal(run.steps, 4);
      assert.ok(Number.isFinite(run.finalLoss) && run.finalLoss! > 0);
      assert.ok(run.seconds! > 0);
      let total = 0;
      for (const f of sampleStores) {
        const r = await SliceStoreReader.open(f);
        total += r.count;
        await r.close();
      }
      assert.equal(run.poolSlices, total, 'the pool holds every sample slice');
      const bytes = await readFile(c.app.get(BlobsService).store.pathOf(run.weightsSha256!));
      const weights = decodeWeights(bytes, 'weights');
      assert.equal(weights.manifest.architecture.name, 'unet');
      assert.equal(weights.manifest.architecture.config.inputSize, 32);
      const [record] = await c.app.get(BlobsService).findBySha256(run.weightsSha256!);
      assert.equal(record!.kind, 'segmenter');
      assert.deepEqual(
        [record!.meta.studyId, record!.meta.model, record!.meta.trainedOn],
        [STUDY, 'unet', 'synthetic'],
      );
      const metrics = await c.app.get(MetricsService).render();
      assert.match(metrics, /fedsynth_segmenter_training_steps_total\{model="unet"\} 4/);
      assert.match(metrics, /fedsynth_segmenter_training_seconds_count\{model="unet",outcome="done"\} 1/);
      runId = run.id;
      weightsSha = run.weightsSha256!;

      // the real evaluator on held-out phantom subjects, packed as a site's handler packs it
      const file = path.join(tmp, `${dialect}.weights`);
      await copyFile(c.app.get(BlobsService).store.pathOf(weightsSha), file);
      const result = await evaluateSegmenterModel({ model: file, data: heldOut, split: 'all', workDir: tmp });
      const score = (s: (typeof result.perSubject)[number], m: 'dice' | 'hd95'): ScoreTable => ({
        NCR: s.labels.NCR[m],
        ED: s.labels.ED[m],
        ET: s.labels.ET[m],
        WT: s.regions.WT[m],
        TC: s.regions.TC[m],
      });
      const rows = result.perSubject;
      realSummary = {
        subjects: rows.length,
        slices: 7,
        mean: summaryOf(rows.map((s) => score(s, 'dice'))).mean,
        perSubject: rows.map((s, i) => ({ subject: i + 1, dice: score(s, 'dice'), hd95: score(s, 'hd95') })),
      };
    });

    it('evaluates at every active site and aggregates over all subjects of all sites', async () => {
      const evaluations = c.app.get(EvaluationsService);
      const started = await evaluations.evaluate({ segmenterRunId: runId }, 'unet/synthetic');
      assert.equal(started.state, 'running');
      assert.deepEqual(Object.keys(started.sites).sort(), [siteA, siteB].sort());
      const other = summaryOf([
        table(0.5, 0.6, 0.7, 0.8, 0.9),
        table(null, 0.2, 0.3, 0.4, 0.5),
        table(0.1, 0, 1, 1, 0.7),
      ]);
      await answer(siteA, started.id, realSummary);
      assert.equal((await evaluations.get(started.id)).state, 'running', 'waits for every site');
      await answer(siteB, started.id, other);
      const done = await finished(started.id);
      assert.equal(done.state, 'done');
      const r = done.result!;
      assert.equal(r.sites, 2);
      assert.equal(r.subjects, realSummary.subjects + 3);
      assert.equal(r.slices, 7 + 15);
      const all = [...realSummary.perSubject, ...other.perSubject];
      for (const key of SCORE_KEYS) {
        const values = all.map((s) => s.dice[key]).filter((v): v is number => v !== null);
        const expected = values.reduce((a, b) => a + b, 0) / values.length;
        assert.ok(
          Math.abs(r.mean.dice[key]! - expected) < 1e-12,
          `${key}: ${r.mean.dice[key]} vs ${expected}`,
        );
      }
      assert.ok(Math.abs(r.perSite[siteB]!.mean.dice.NCR! - 0.3) < 1e-12, 'NCR mean skips the null');
      assert.ok(Math.abs(r.perSite[siteB]!.mean.hd95.WT! - 10 * (1 - (0.8 + 0.4 + 1) / 3)) < 1e-12);
      assert.deepEqual(
        r.perSite[siteA]!.mean.dice,
        summaryOf(realSummary.perSubject.map((s) => s.dice)).mean.dice,
      );
    });

    it("refuses a site's summary that breaks the contract, and keeps the others", async () => {
      const evaluations = c.app.get(EvaluationsService);
      const started = await evaluations.evaluate({ weightsSha256: weightsSha, studyId: STUDY }, 'unet/check');
      const bad = summaryOf([table(0.5, 0.6, 0.7, 0.8, 0.9)]);
      bad.perSubject[0]!.dice.WT = 1.5;
      await answer(siteA, started.id, bad);
      await answer(siteB, started.id, summaryOf([table(0.5, 0.5, 0.5, 0.5, 0.5)]));
      const done = await finished(started.id);
      assert.equal(done.state, 'done');
      assert.equal(done.sites[siteA]!.state, 'refused');
      assert.match(done.sites[siteA]!.error!, /result refused: subject 1: Dice WT = 1.5 is not in \[0, 1\]/);
      assert.equal(done.result!.sites, 1);
      assert.equal(done.result!.mean.dice.WT, 0.5);

      const both = await evaluations.evaluate({ weightsSha256: weightsSha, studyId: STUDY }, 'unet/bad');
      await answer(siteA, both.id, { subjects: 1, slices: 1, mean: {}, perSubject: [], extra: 'ids' });
      await answer(siteB, both.id, { ...summaryOf([table(1, 1, 1, 1, 1)]), subjects: 2 });
      const failed = await finished(both.id);
      assert.equal(failed.state, 'failed');
      assert.match(failed.sites[siteA]!.error!, /does not match the contract/);
      assert.match(failed.sites[siteB]!.error!, /names 2 subjects but lists 1/);
      assert.match(failed.error!, /does not match the contract/);
    });

    it('runs the comparison and reports Dice and ratios from the stored numbers (REST, roles)', async () => {
      const admin = await c.tokenFor('admin');
      const auditor = await c.tokenFor('auditor');
      const researcher = await c.tokenFor('researcher');
      const body = {
        model: 'unet',
        profile: 'tiny',
        steps: 2,
        batch: 4,
        rounds: 1,
        localSteps: 1,
        mixShares: [0.5, 0],
      };
      assert.equal(
        (await c.request('POST', `/api/studies/${STUDY}/utility`, { body, token: auditor })).status,
        403,
      );
      const bad = await c.request('POST', `/api/studies/${STUDY}/utility`, {
        body: { ...body, mixShares: [2] },
        token: admin,
      });
      assert.equal(bad.status, 400);
      const res = await c.request('POST', `/api/studies/${STUDY}/utility`, { body, token: admin });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const utility = c.app.get(UtilityService);
      const evaluations = c.app.get(EvaluationsService);
      // the studies side: 4 FedAvg segmenter studies (real, both, mix 0, mix 0.5), 'both' and mixes with the pool
      const studies = await until('segmenter studies', async () => {
        await utility.advance(res.body.id);
        return played.created.length === 4 ? played.created : undefined;
      });
      const byArm = new Map(
        studies.map((s) => [
          s.data === undefined ? 'real' : s.data.both ? 'both' : `mix:${s.data.syntheticShare}`,
          s,
        ]),
      );
      assert.deepEqual([...byArm.keys()].sort(), ['both', 'mix:0', 'mix:0.5', 'real']);
      const run = await utility.get(res.body.id);
      assert.ok(run.poolSha256);
      assert.equal(byArm.get('both')!.syntheticPoolSha256, run.poolSha256);
      assert.equal(byArm.get('real')!.syntheticPoolSha256, undefined);
      assert.deepEqual(byArm.get('real')!.siteIds.sort(), [siteA, siteB].sort());
      for (const s of studies) played.outcomes.set(s.id, { state: 'done', weightsSha256: weightsSha });

      // Dice per arm (site A, site B): what the sites answer
      const answers: Record<string, [ScoreTable, ScoreTable]> = {
        synthetic: [table(0.4, 0.5, 0.6, 0.7, 0.6), table(0.2, 0.3, 0.4, 0.5, 0.4)],
        real: [table(0.5, 0.6, 0.8, 0.9, 0.8), table(0.3, 0.4, 0.6, 0.7, 0.6)],
        both: [table(0.6, 0.7, 0.8, 0.9, 0.8), table(0.4, 0.5, 0.6, 0.7, 0.6)],
        'mix:0': [table(0.5, 0.6, 0.8, 0.9, 0.8), table(0.3, 0.4, 0.6, 0.7, 0.6)],
        'mix:0.5': [table(0.45, 0.55, 0.7, 0.8, 0.7), table(0.25, 0.35, 0.5, 0.6, 0.5)],
      };
      const answered = new Set<string>();
      await until('every arm done', async () => {
        const current = await utility.advance(res.body.id);
        for (const arm of current.arms) {
          if (arm.state === 'evaluating' && !answered.has(arm.trainedOn)) {
            answered.add(arm.trainedOn);
            await answer(siteA, arm.evaluationId!, summaryOf([answers[arm.trainedOn]![0]]));
            await answer(siteB, arm.evaluationId!, summaryOf([answers[arm.trainedOn]![1]]));
            await finished(arm.evaluationId!);
          }
        }
        return current.state === 'running' ? undefined : current;
      });
      assert.equal(
        (await c.request('GET', `/api/studies/${STUDY}/utility`, { token: researcher })).status,
        403,
      );
      const report = await c.request('GET', `/api/studies/${STUDY}/utility`, { token: auditor });
      assert.equal(report.status, 200);
      const row = report.body.runs.find((r: { id: string }) => r.id === res.body.id);
      assert.equal(row.state, 'done');
      // compute from the stored evaluations, independently of the report code
      const stored = new Map<string, ScoreTable>();
      for (const arm of (await utility.get(res.body.id)).arms) {
        stored.set(arm.trainedOn, (await evaluations.get(arm.evaluationId!)).result!.mean.dice);
      }
      for (const key of SCORE_KEYS) {
        const mean = (arm: string) => (answers[arm]![0][key]! + answers[arm]![1][key]!) / 2;
        assert.ok(Math.abs(stored.get('synthetic')![key]! - mean('synthetic')) < 1e-12);
        const ratio = stored.get('synthetic')![key]! / stored.get('real')![key]!;
        assert.ok(Math.abs(row.table.syntheticToReal[key] - ratio) < 1e-12, `${key} ratio`);
        assert.ok(
          Math.abs(row.table.bothToReal[key] - stored.get('both')![key]! / stored.get('real')![key]!) < 1e-12,
        );
      }
      assert.ok(Math.abs(row.table.syntheticToReal.WT - 0.6 / 0.8) < 1e-12);
      assert.deepEqual(
        row.mixing.map((m: { syntheticShare: number }) => m.syntheticShare),
        [0, 0.5],
      );
      assert.ok(Math.abs(row.mixing[0].toReal.ET - 1) < 1e-12);
      assert.ok(Math.abs(row.mixing[1].dice.ET - 0.6) < 1e-12);

      // the release card's evidence is the same table
      const facts = await c.app.get(ReleaseEvidence).evaluationFor(STUDY);
      assert.deepEqual(facts.map((f) => f.label).sort(), [
        'unet/both',
        'unet/mix:0',
        'unet/mix:0.5',
        'unet/real',
        'unet/synthetic',
      ]);
      const synthetic = facts.find((f) => f.label === 'unet/synthetic')!;
      assert.deepEqual(synthetic.dice, stored.get('synthetic'));
      assert.equal(synthetic.sites, 2);
      assert.match(synthetic.note!, /Dice synthetic\/real: WT 0\.750/);
    });

    it('after a restart: a run that was training fails with the reason, queued runs and open evaluations go on', async () => {
      const segmentation = c.app.get(SegmentationService);
      const long = await segmentation.trainOnPool(STUDY, {
        model: 'unet',
        profile: 'tiny',
        steps: 1_000_000,
      });
      const queued = await segmentation.trainOnPool(STUDY, {
        model: 'unet',
        profile: 'tiny',
        steps: 2,
        batch: 2,
      });
      await until('training', async () =>
        (await segmentation.get(long.id)).state === 'training' ? true : undefined,
      );
      assert.equal((await segmentation.get(queued.id)).state, 'queued', 'one training at a time');
      const open = await c.app.get(EvaluationsService).evaluate({ segmenterRunId: runId }, 'unet/restart');
      const { database, clock } = c;
      await c.app.close();
      c = await startTestCoordinator(dialect, { database, clock, imports: [PlayedStudiesModule] });
      const again = c.app.get(SegmentationService);
      const interrupted = await again.get(long.id);
      assert.equal(interrupted.state, 'failed');
      assert.equal(interrupted.error, INTERRUPTED_ERROR);
      assert.equal((await again.waitFor(queued.id)).state, 'done');
      await answer(siteA, open.id, summaryOf([table(0.1, 0.2, 0.3, 0.4, 0.5)]));
      await answer(siteB, open.id, summaryOf([table(0.3, 0.4, 0.5, 0.6, 0.7)]));
      const done = await finished(open.id);
      assert.ok(Math.abs(done.result!.mean.dice.WT! - 0.5) < 1e-12);
    });
  });
}
