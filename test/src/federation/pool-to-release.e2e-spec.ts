// The second half of the platform end to end, with real in-process site agents (the default job handlers) over
// real socket.io — SQLite, and PostgreSQL when FEDSYNTH_TEST_POSTGRES_URL is set. After a FedAvg Progressive GAN
// study has pooled its samples:
// 1. the utility comparison (POST /api/studies/:id/utility, through the real StudiesStudyGateway): the U-Net trained
//    centrally on the pool, the FedAvg 'real', 'both' and mixing studies trained by the sites' train-round handler,
//    every arm evaluated by the sites' evaluate handler; the table's numbers are the stored evaluations';
// 2. the memorization audit (POST /api/audits): every site's audit handler scores the pool, in which one site's
//    samples were replaced by a store whose first slice is a copy of one of that site's private training slices:
//    that candidate is withheld (by its owner);
// 3. approval, the release build, a researcher (created over the users API) lists and downloads it: the tar's
//    MANIFEST.sha256 verifies, it holds the candidates minus the withheld ones, and its card carries the utility
//    numbers and the audit summary; an auditor cannot download, a researcher cannot see audits.
// Each site's private data is a pair of small slice stores (16² and 32²) in its data folder, at least 2 subjects.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { AuditsService } from '@fedsynth/coordinator/audits/audits.service';
import type { Job } from '@fedsynth/coordinator/jobs/job.entity';
import { StudiesStudyGateway, StudyGateway } from '@fedsynth/coordinator/evaluations/study-gateway';
import { UtilityService } from '@fedsynth/coordinator/evaluations/utility.service';
import { ReleasesService } from '@fedsynth/coordinator/releases/releases.service';
import { PoolSample } from '@fedsynth/coordinator/studies/study.entity';
import { testDialects } from '@fedsynth/coordinator/testing/test-database';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { evaluationSummarySchema } from '@fedsynth/common/protocol/job-payloads';
import { SliceStoreReader, SliceStoreWriter, buildSliceStore } from '@fedsynth/common/slices/index';
import {
  type SiteAgent,
  defaultJobHandlers,
  machineCapabilities,
  silentLogger,
  summarizeDataset,
} from '@fedsynth/site-agent/agent/index';
import { type EnrolledSite, type Federation, startFederation, waitFor } from './federation-harness.js';

const run = promisify(execFile);

type Json = Record<string, unknown>;
type Scores = Record<'NCR' | 'ED' | 'ET' | 'WT' | 'TC', number | null>;
const SCORE_KEYS = ['NCR', 'ED', 'ET', 'WT', 'TC'] as const;

/** Small phantom grids: a case is generated and sliced in a fraction of a second. */
const DIMS: [number, number, number] = [128, 128, 96];
/** every site has a training and a held-out subject (the evaluation and the audit's reference need both) */
const SITE_SIZES = [3, 2, 2];
const SITE_COUNT = SITE_SIZES.length;
const SAMPLES_PER_SITE = 6;
const MIX_SHARE = 0.5;
const MIX_TOTAL = 8;

const sorted = (ids: readonly string[]) => [...ids].sort();

/** Per site: a data folder with a 16² and a 32² slice store (at least one subject held out). */
let siteData: { dir: string }[] = [];
let dataRoot: string | undefined;

before(async () => {
  const root = (dataRoot = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-pool-to-release-')));
  const phantom = await writePhantomSites({
    out: path.join(root, 'phantom'),
    sites: SITE_COUNT,
    cases: SITE_SIZES.reduce((a, b) => a + b, 0),
    siteSizes: SITE_SIZES,
    seed: 31,
    naming: '2021',
    dims: DIMS,
  });
  siteData = [];
  for (const [i, site] of phantom.sites.entries()) {
    const dir = path.join(root, `private-${i + 1}`);
    await mkdir(dir, { recursive: true });
    for (const preset of ['cpu16', 'cpu32'] as const) {
      await buildSliceStore({
        dataDir: site.dir,
        out: path.join(dir, `${preset}.fss`),
        preset,
        seed: 0,
        testFraction: 0.15,
      });
    }
    siteData.push({ dir });
  }
});
after(async () => {
  if (dataRoot) await rm(dataRoot, { recursive: true, force: true });
});

for (const dialect of testDialects()) {
  describe(`from a pooled study to a downloaded release with real site handlers (${dialect})`, () => {
    let fed: Federation;
    let sites: EnrolledSite[];
    const agents: SiteAgent[] = [];
    let generatorStudyId: string;
    let researcher: string;
    let auditor: string;
    let utilityRunId: string;
    let auditId: string;
    /** the candidate index of the planted copy of a private training slice */
    let planted: number;

    const siteIds = () => sites.map((s) => s.siteId);
    const get = async (url: string, token = fed.admin) => {
      const res = await fed.coordinator.request('GET', url, { token });
      assert.equal(res.status, 200, `${url}: ${JSON.stringify(res.body)}`);
      return res.body;
    };
    const post = async (url: string, body: Json, status: number, token = fed.admin) => {
      const res = await fed.coordinator.request('POST', url, { token, body });
      assert.equal(res.status, status, `${url}: ${JSON.stringify(res.body)}`);
      return res.body;
    };

    async function waitForStudy(id: string): Promise<Json> {
      return waitFor(
        async () => {
          const study = await get(`/api/studies/${id}`);
          if (study.state === 'failed' || study.state === 'cancelled') {
            assert.fail(`study ${study.state}: ${study.error}`);
          }
          return study.state === 'done' ? study : undefined;
        },
        `study ${id} to finish`,
        240_000,
        100,
      );
    }

    const inputOf = (job: Job, role: string) => job.inputs.find((i) => i.role === role);

    before(async () => {
      fed = await startFederation(dialect);
      sites = [];
      for (let i = 0; i < SITE_COUNT; i++) sites.push(await fed.enroll(`release-site-${i + 1}`));
      for (const [i, site] of sites.entries()) {
        const dataDir = siteData[i]!.dir;
        const agent = await fed.startAgent(site, {
          site: { ...site.state, dataDir },
          // what `fedsynth site run` registers: train-round, sample, evaluate, audit (and echo-upload)
          handlers: defaultJobHandlers,
          describe: async () => ({
            capabilities: machineCapabilities(['wasm']),
            dataset: await summarizeDataset(dataDir, silentLogger),
          }),
        });
        await agent.waitReady();
        agents.push(agent);
      }
      // the researcher and the auditor are created by the admin over the users API, then log in
      const password = 'a long enough password';
      for (const role of ['researcher', 'auditor'] as const) {
        await post('/api/users', { username: `${role}-one`, role, password }, 201);
      }
      researcher = await fed.coordinator.login('researcher-one', password);
      auditor = await fed.coordinator.login('auditor-one', password);

      const study = await post(
        '/api/studies',
        {
          name: 'release generator',
          model: { task: 'generator', model: 'progan', profile: 'tiny' },
          mode: 'fedavg',
          rounds: 1,
          localSteps: 2,
          batchSize: 4,
          samplesPerSite: SAMPLES_PER_SITE,
          siteIds: siteIds(),
          seed: 11,
        },
        201,
      );
      generatorStudyId = study.id as string;
      const done = await waitForStudy(generatorStudyId);
      assert.equal((done.pool as { total: number }).total, SAMPLES_PER_SITE * SITE_COUNT);
    });
    after(() => fed?.dispose());

    it('the utility comparison runs every arm on the real sites and reports the stored evaluations', async (t) => {
      // no override: the comparison reaches the studies through the real gateway
      assert.ok(fed.app.get(StudyGateway) instanceof StudiesStudyGateway);
      const started = await post(
        `/api/studies/${generatorStudyId}/utility`,
        {
          model: 'unet',
          profile: 'tiny',
          steps: 2,
          batch: 4,
          rounds: 1,
          localSteps: 1,
          mixShares: [MIX_SHARE],
          mixTotalSlices: MIX_TOTAL,
        },
        201,
      );
      utilityRunId = started.id as string;
      type Arm = {
        trainedOn: string;
        state: string;
        error: string | null;
        segmenterRunId: string | null;
        segmenterStudyId: string | null;
        weightsSha256: string | null;
        evaluationId: string | null;
        subjects: number | null;
        sites: number | null;
        dice: Scores | null;
      };
      type RunReport = {
        id: string;
        state: string;
        error: string | null;
        arms: Arm[];
        table: Record<'synthetic' | 'real' | 'both' | 'syntheticToReal' | 'bothToReal', Scores | null>;
        mixing: { syntheticShare: number; dice: Scores | null; toReal: Scores | null }[];
      };
      const report = await waitFor(
        async () => {
          const r = ((await get(`/api/studies/${generatorStudyId}/utility`)).runs as RunReport[]).find(
            (x) => x.id === utilityRunId,
          );
          if (r?.state === 'failed') assert.fail(`utility run failed: ${r.error}`);
          return r?.state === 'done' ? r : undefined;
        },
        'the utility run to finish',
        360_000,
        250,
      );
      assert.deepEqual(
        report.arms.map((a) => [a.trainedOn, a.state, a.error]),
        ['synthetic', 'real', 'both', `mix:${MIX_SHARE}`].map((t) => [t, 'done', null]),
      );
      const mergedPool = (await fed.app.get(UtilityService).get(utilityRunId)).poolSha256;
      assert.ok(mergedPool, 'the merged pool of the both/mixing arms');

      const armOf = (t: string) => report.arms.find((a) => a.trainedOn === t)!;
      // the central arm trained on the coordinator; the others are FedAvg studies the sites really trained
      assert.ok(armOf('synthetic').segmenterRunId && !armOf('synthetic').segmenterStudyId);
      for (const trainedOn of ['real', 'both', `mix:${MIX_SHARE}`]) {
        const arm = armOf(trainedOn);
        const study = await waitForStudy(arm.segmenterStudyId!);
        assert.equal(
          study.modelSha256,
          arm.weightsSha256,
          `${trainedOn}: the evaluated model is the study's`,
        );
        const train = await fed.jobs().list({ studyId: arm.segmenterStudyId!, kind: 'train-round' });
        assert.deepEqual(sorted(train.map((j) => j.siteId)), sorted(siteIds()), `${trainedOn}: every site`);
        for (const job of train) {
          assert.equal(job.state, 'done', `${trainedOn} at ${job.siteId}: ${JSON.stringify(job.error)}`);
          const payload = job.payload as { model: Json; data?: Json };
          assert.deepEqual(payload.model, { task: 'segmenter', model: 'unet', profile: 'tiny' });
          const pool = inputOf(job, 'synthetic-pool');
          if (trainedOn === 'real') {
            assert.equal(pool, undefined, 'the real baseline sees no synthetic slice');
            assert.equal(payload.data, undefined);
          } else {
            assert.equal(pool?.sha256, mergedPool, `${trainedOn}: the merged pool is sent as synthetic-pool`);
            if (trainedOn === 'both') assert.equal(payload.data?.both, true);
            else {
              assert.equal(payload.data?.syntheticShare, MIX_SHARE);
              assert.equal(payload.data?.totalSlices, MIX_TOTAL);
            }
          }
        }
        const round = (
          study.roundHistory as { contributions: Record<string, { trainSlices: number }> }[]
        )[0]!;
        if (trainedOn === `mix:${MIX_SHARE}`) {
          // the site mixed the fixed total it was asked for
          for (const siteId of siteIds()) assert.equal(round.contributions[siteId]!.trainSlices, MIX_TOTAL);
        }
      }

      // four different models: the synthetic pool really changed what the both/mixing studies trained on
      assert.equal(new Set(report.arms.map((a) => a.weightsSha256)).size, report.arms.length);

      // every arm's numbers are those of its stored evaluation, which every site's evaluate handler answered
      for (const arm of report.arms) {
        assert.ok(arm.evaluationId && arm.weightsSha256 && arm.dice);
        const evaluation = await get(`/api/evaluations/${arm.evaluationId}`);
        assert.equal(evaluation.state, 'done');
        assert.equal(evaluation.weightsSha256, arm.weightsSha256);
        const result = evaluation.result as { subjects: number; sites: number; mean: { dice: Scores } };
        assert.deepEqual(arm.dice, result.mean.dice, `${arm.trainedOn}: Dice as stored`);
        assert.equal(arm.subjects, result.subjects);
        assert.equal(arm.sites, SITE_COUNT);
        let subjects = 0;
        for (const siteId of siteIds()) {
          const site = (evaluation.sites as Record<string, { jobId: string; state: string; summary: Json }>)[
            siteId
          ]!;
          assert.equal(site.state, 'done', `${arm.trainedOn} at ${siteId}`);
          const job = await fed.jobs().get(site.jobId);
          assert.deepEqual([job.kind, job.siteId, job.state], ['evaluate', siteId, 'done']);
          assert.equal(inputOf(job, 'segmenter')?.sha256, arm.weightsSha256);
          const summary = evaluationSummarySchema.parse(site.summary);
          assert.ok(summary.subjects >= 1 && summary.slices > 0, JSON.stringify(summary));
          subjects += summary.subjects;
        }
        assert.equal(result.subjects, subjects, 'the mean is over all subjects of all sites');
        for (const k of SCORE_KEYS) {
          const v = arm.dice[k];
          if (v !== null) assert.ok(v >= 0 && v <= 1, `${arm.trainedOn} ${k} = ${v}`);
        }
      }
      const ratio = (a: Scores | null, b: Scores | null) =>
        Object.fromEntries(
          SCORE_KEYS.map((k) => {
            const x = a![k];
            const y = b![k];
            return [k, x === null || y === null || y === 0 ? null : x / y];
          }),
        );
      const dice = (t: string) => armOf(t).dice;
      assert.deepEqual(report.table.synthetic, dice('synthetic'));
      assert.deepEqual(report.table.real, dice('real'));
      assert.deepEqual(report.table.both, dice('both'));
      assert.deepEqual(report.table.syntheticToReal, ratio(dice('synthetic'), dice('real')));
      assert.deepEqual(report.table.bothToReal, ratio(dice('both'), dice('real')));
      t.diagnostic(
        `Dice WT: ${report.arms.map((a) => `${a.trainedOn} ${a.dice!.WT?.toFixed(3)}`).join(', ')}; ` +
          `${report.arms[0]!.subjects} test subjects`,
      );
      assert.deepEqual(report.mixing, [
        {
          syntheticShare: MIX_SHARE,
          dice: dice(`mix:${MIX_SHARE}`),
          toReal: ratio(dice(`mix:${MIX_SHARE}`), dice('real')),
        },
      ]);
    });

    it("the audit runs at every site and withholds a planted copy of a site's private training slice", async (t) => {
      // one site's pooled samples are replaced by a store whose first slice is one of its private training slices
      // (what a generator that memorized would have uploaded); the pool row points at the new blob
      const owner = sites[0]!;
      const rows = await fed
        .db()
        .getRepository(PoolSample)
        .find({ where: { studyId: generatorStudyId } });
      const row = rows.find((r) => r.siteId === owner.siteId)!;
      const samples = await SliceStoreReader.open(fed.blobs().store.pathOf(row.sha256));
      const privateStore = await SliceStoreReader.open(path.join(siteData[0]!.dir, 'cpu32.fss'));
      const file = path.join(fed.tmp, 'planted.fss');
      try {
        assert.equal(samples.meta.size, privateStore.meta.size);
        assert.deepEqual(samples.meta.channels, privateStore.meta.channels);
        const subject = privateStore.meta.subjects.find((s) => s.split === 'train')!;
        const copy = await privateStore.readIndices([subject.first + Math.floor(subject.count / 2)]);
        const bytes = await samples.readRange(0, samples.count);
        bytes.set(copy, 0);
        const { preset, scale, size, channels, dtype, layout, annotation, split } = samples.meta;
        const writer = await SliceStoreWriter.create(file, {
          ...{ preset, scale, size, channels, dtype, layout, annotation, split },
          createdAt: samples.meta.createdAt,
        });
        let at = 0;
        for (const { first: _first, count, ...s } of samples.meta.subjects) {
          const sliceBytes = size * size * channels.length;
          await writer.addSubject(s, bytes.subarray(at * sliceBytes, (at + count) * sliceBytes));
          at += count;
        }
        await writer.close();
      } finally {
        await samples.close();
        await privateStore.close();
      }
      const blob = await fed
        .blobs()
        .storeFile(file, { kind: 'samples', meta: { studyId: generatorStudyId } });
      await fed
        .db()
        .getRepository(PoolSample)
        .update({ id: row.id }, { sha256: blob.sha256, size: blob.size });

      type AuditView = {
        id: string;
        state: string;
        error: string | null;
        candidates: number;
        sources: { siteId: string; first: number; count: number }[];
        sites: {
          siteId: string;
          state: string;
          jobId: string;
          threshold: number;
          flagged: number[];
          maxScore: number;
          referenceCount: number;
        }[];
        combined: { withheldCount: number; releasable: number } | null;
        flaggedCandidates: { index: number; maxScore: number; sites: string[] }[];
      };
      const started = (await post(
        '/api/audits',
        { studyId: generatorStudyId, margin: 0.01 },
        201,
      )) as AuditView;
      auditId = started.id;
      const audit = await waitFor(
        async () => {
          const a = (await get(`/api/audits/${auditId}`)) as AuditView;
          if (a.state === 'failed') assert.fail(`audit failed: ${a.error}`);
          return a.state === 'scored' ? a : undefined;
        },
        'the audit to be scored',
        240_000,
        250,
      );
      await fed.app.get(AuditsService).settled();
      assert.equal(audit.candidates, SAMPLES_PER_SITE * SITE_COUNT);
      assert.deepEqual(sorted(audit.sites.map((s) => s.siteId)), sorted(siteIds()));
      for (const site of audit.sites) {
        assert.equal(site.state, 'scored');
        const job = await fed.jobs().get(site.jobId);
        assert.deepEqual([job.kind, job.siteId, job.state], ['audit', site.siteId, 'done']);
        assert.ok(site.referenceCount > 0, 'a held-out reference');
        assert.ok(site.threshold > -1 && site.threshold < 1, `site threshold ${site.threshold}`);
      }
      t.diagnostic(
        audit.sites
          .map((s) => `threshold ${s.threshold.toFixed(4)} max ${s.maxScore.toFixed(4)} flagged ${s.flagged}`)
          .join('; '),
      );
      const source = audit.sources.find((s) => s.siteId === owner.siteId)!;
      planted = source.first;
      const ownerResult = audit.sites.find((s) => s.siteId === owner.siteId)!;
      assert.ok(ownerResult.maxScore > 0.999, `the copy scores ${ownerResult.maxScore} at its owner`);
      assert.ok(ownerResult.flagged.includes(planted), 'the owner flags the copy of its private slice');
      const withheld = audit.flaggedCandidates.map((c) => c.index);
      assert.ok(withheld.includes(planted), 'the copy is withheld');
      assert.ok(audit.flaggedCandidates.find((c) => c.index === planted)!.sites.includes(owner.name));
      assert.equal(audit.combined!.withheldCount, withheld.length);
      assert.equal(audit.combined!.releasable, audit.candidates - withheld.length);
      assert.ok(withheld.length < audit.candidates, 'the untouched samples of a barely trained GAN stay');

      // auditors read audits; researchers never see them
      assert.equal(
        (await fed.coordinator.request('GET', `/api/audits/${auditId}`, { token: auditor })).status,
        200,
      );
      for (const url of ['/api/audits', `/api/audits/${auditId}`]) {
        assert.equal((await fed.coordinator.request('GET', url, { token: researcher })).status, 403, url);
      }
    });

    it('an approved audit becomes a release that a researcher downloads, verifies and reads the card of', async () => {
      const audit = (await get(`/api/audits/${auditId}`)) as {
        candidates: number;
        flaggedCandidates: { index: number }[];
        sites: { siteName: string; threshold: number; flaggedCount: number }[];
      };
      const withheld = audit.flaggedCandidates.map((c) => c.index);
      await post(`/api/audits/${auditId}/decision`, { approve: true, comment: 'checked' }, 200);
      const created = await post('/api/releases', { auditId }, 202);
      const built = await fed.app.get(ReleasesService).settled(created.id as string);
      assert.equal(built.state, 'ready', built.error ?? '');
      assert.equal(built.sampleCount, audit.candidates - withheld.length);

      const list = (await get('/api/releases', researcher)) as { id: string }[];
      assert.deepEqual(
        list.map((r) => r.id),
        [built.id],
      );
      assert.equal(
        (await fed.coordinator.request('GET', `/api/releases/${built.id}/download`, { token: auditor }))
          .status,
        403,
      );
      const res = await fetch(`${fed.url}/api/releases/${built.id}/download`, {
        headers: { authorization: `Bearer ${researcher}` },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/x-tar');
      assert.equal(res.headers.get('x-manifest-sha256'), built.manifestSha256);
      const x = path.join(fed.tmp, 'download');
      await mkdir(x);
      const tarFile = path.join(x, 'release.tar');
      await writeFile(tarFile, Buffer.from(await res.arrayBuffer()));
      await run('tar', ['-xf', tarFile, '-C', x]);
      const folder = path.join(x, `fedsynth-release-v${built.version}`);
      await run('sha256sum', ['-c', '--quiet', 'MANIFEST.sha256'], { cwd: folder });
      const manifest = await readFile(path.join(folder, 'MANIFEST.sha256'));
      assert.equal(createHash('sha256').update(manifest).digest('hex'), built.manifestSha256);

      // the candidates minus the withheld ones, the planted copy among the latter
      const released = (await readFile(path.join(folder, 'provenance.csv'), 'utf8'))
        .trim()
        .split('\n')
        .slice(1)
        .map((r) => Number(r.split(',')[1]));
      assert.deepEqual(
        sorted(released.map(String)),
        sorted(
          Array.from({ length: audit.candidates }, (_, i) => i)
            .filter((i) => !withheld.includes(i))
            .map(String),
        ),
      );
      assert.ok(!released.includes(planted), 'the planted copy is not released');

      // the card: the utility numbers of every arm and the audit summary
      const card = JSON.parse(await readFile(path.join(folder, 'card.json'), 'utf8')) as {
        samples: number;
        withheld: number;
        evaluation: { label: string; dice: Scores; subjects?: number; sites?: number; note?: string }[];
        audit: {
          id: string;
          candidates: number;
          withheld: number;
          decidedBy?: string;
          comment?: string;
          sites: { site: string; threshold: number; flagged: number }[];
        };
      };
      assert.equal(card.samples, built.sampleCount);
      assert.deepEqual(
        [card.audit.id, card.audit.candidates, card.audit.withheld, card.audit.decidedBy, card.audit.comment],
        [auditId, audit.candidates, withheld.length, 'root', 'checked'],
      );
      assert.deepEqual(
        sorted(card.audit.sites.map((s) => `${s.site} ${s.threshold} ${s.flagged}`)),
        sorted(audit.sites.map((s) => `${s.siteName} ${s.threshold} ${s.flaggedCount}`)),
      );
      const report = (await get(`/api/studies/${generatorStudyId}/utility`)).runs as {
        id: string;
        arms: { trainedOn: string; dice: Scores; subjects: number; sites: number }[];
      }[];
      const arms = report.find((r) => r.id === utilityRunId)!.arms;
      assert.deepEqual(
        card.evaluation.map((e) => [e.label, e.dice, e.subjects, e.sites]),
        arms.map((a) => [`unet/${a.trainedOn}`, a.dice, a.subjects, a.sites]),
      );
      assert.match(card.evaluation.find((e) => e.label === 'unet/synthetic')!.note ?? '', /synthetic\/real/);
      // the card in the listing is the file in the tar
      const detail = await get(`/api/releases/${built.id}`, researcher);
      assert.deepEqual(detail.card, card);
    });
  });
}
