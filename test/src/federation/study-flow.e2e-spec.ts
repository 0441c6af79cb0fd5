// Whole studies end to end: the coordinator's study orchestrator (created over REST) driving real in-process site
// agents whose real study handlers (train-round, sample, evaluate) train tiny models on phantom slices over real
// socket.io — SQLite, and PostgreSQL when FEDSYNTH_TEST_POSTGRES_URL is set:
// 1. a FedAvg StyleGAN 2 study: every site contributes to every round, the global weights are the trainSlices-
//    weighted average and move between rounds, the pool holds samplesPerSite valid slices per site with provenance;
// 2. the same in 'local' mode: every site trains on and samples from its own weights;
// 3. a FedAvg U-Net study on a real/synthetic mix (the pool sent as 'synthetic-pool') ends with a segmenter model
//    that every site evaluates into a contract summary;
// 4. minSites with a site whose agent is stopped: the round closes at its deadline without it, and the site, back
//    online, takes part in the next round.
// Each site's private data is a pair of small slice stores (16² and 32²) in its data folder, cut once for all.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BlobRecord } from '@fedsynth/coordinator/blobs/blob-record.entity';
import type { Job } from '@fedsynth/coordinator/jobs/job.entity';
import { StudiesService } from '@fedsynth/coordinator/studies/studies.service';
import { StudyOrchestrator, sampleSeed } from '@fedsynth/coordinator/studies/study-orchestrator';
import { testDialects } from '@fedsynth/coordinator/testing/test-database';
import { decodeWeights } from '@fedsynth/common/ml/weights/index';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { evaluationSummarySchema } from '@fedsynth/common/protocol/job-payloads';
import { ANNOTATION_OF_CANONICAL, SliceStoreReader, buildSliceStore } from '@fedsynth/common/slices/index';
import {
  JobHandlerRegistry,
  type SiteAgent,
  evaluateHandler,
  machineCapabilities,
  sampleHandler,
  silentLogger,
  summarizeDataset,
  trainRoundHandler,
} from '@fedsynth/site-agent/agent/index';
import { type EnrolledSite, type Federation, startFederation, waitFor } from './federation-harness.js';

type Json = Record<string, unknown>;

interface Contribution {
  jobId: string;
  weightsSha256: string;
  emaSha256: string | null;
  trainSlices: number;
  steps: number | null;
}

interface RoundView {
  index: number;
  state: string;
  participants: string[];
  contributors: string[];
  inputWeightsSha256: string | null;
  inputEmaSha256: string | null;
  outputWeightsSha256: string | null;
  outputEmaSha256: string | null;
  contributions: Record<string, Contribution>;
}

interface StudyView {
  id: string;
  state: string;
  error: string | null;
  seed: number;
  modelSha256: string | null;
  roundHistory: RoundView[];
  pool: {
    total: number;
    sites: {
      siteId: string;
      jobId: string;
      sha256: string;
      count: number;
      generator: string;
      seed: number;
    }[];
  };
}

/** Small phantom grids: a case is generated and sliced in a fraction of a second. */
const DIMS: [number, number, number] = [128, 128, 96];
/** Unequal sites, so that FedAvg's weighting by training slices is visible. */
const SITE_SIZES = [4, 2, 2];
const SITE_COUNT = SITE_SIZES.length;

const sorted = (ids: readonly string[]) => [...ids].sort();

function registry(): JobHandlerRegistry {
  return new JobHandlerRegistry()
    .register('train-round', trainRoundHandler)
    .register('sample', sampleHandler)
    .register('evaluate', evaluateHandler);
}

/**
 * Independent FedAvg: float tensors are the trainSlices-weighted mean, int32 counters the maximum. Returns how far
 * the plain (unweighted) mean is from the global weights at most: the weighting must be visible in the data.
 */
function assertWeightedAverage(
  global: Buffer,
  parts: { blob: Buffer; weight: number }[],
  what: string,
): number {
  const g = decodeWeights(global);
  const decoded = parts.map((p) => new Map(decodeWeights(p.blob).tensors.map((t) => [t.name, t.data])));
  const total = parts.reduce((s, p) => s + p.weight, 0);
  let checked = 0;
  let unweighted = 0;
  for (const tensor of g.tensors) {
    for (let i = 0; i < tensor.data.length; i++) {
      const values = decoded.map((d) => d.get(tensor.name)![i]!);
      const actual = tensor.data[i]!;
      let expected: number;
      if (tensor.data instanceof Int32Array) expected = Math.max(...values);
      else {
        expected = values.reduce((s, v, k) => s + v * parts[k]!.weight, 0) / total;
        const plain = values.reduce((s, v) => s + v, 0) / values.length;
        unweighted = Math.max(unweighted, Math.abs(actual - plain));
      }
      if (Math.abs(actual - expected) > 1e-6 * Math.max(1, Math.abs(expected))) {
        assert.fail(`${what}: ${tensor.name}[${i}] = ${actual}, the weighted mean is ${expected}`);
      }
      checked++;
    }
  }
  assert.ok(checked > 0, `${what}: no tensor values`);
  return unweighted;
}

function maxAbsDifference(a: Buffer, b: Buffer): number {
  const tb = new Map(decodeWeights(b).tensors.map((t) => [t.name, t.data]));
  let max = 0;
  for (const t of decodeWeights(a).tensors) {
    const o = tb.get(t.name)!;
    for (let i = 0; i < t.data.length; i++) max = Math.max(max, Math.abs(t.data[i]! - o[i]!));
  }
  return max;
}

/** Per site: a data folder with a 16² and a 32² slice store (at least one subject held out). */
let siteData: { dir: string; trainSlices16: number }[] = [];
let dataRoot: string | undefined;
/** a 32² slice store of other subjects: the segmenter study's synthetic pool */
let poolFile: string;

async function trainSlicesOf(file: string): Promise<number> {
  const reader = await SliceStoreReader.open(file);
  try {
    return reader.meta.subjects
      .filter((s) => s.split === 'train' && s.labelled)
      .reduce((sum, s) => sum + s.count, 0);
  } finally {
    await reader.close();
  }
}

before(async () => {
  const root = (dataRoot = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-study-flow-')));
  const phantom = await writePhantomSites({
    out: path.join(root, 'phantom'),
    sites: SITE_COUNT + 1,
    cases: SITE_SIZES.reduce((a, b) => a + b, 0) + 1,
    siteSizes: [...SITE_SIZES, 1], // the last one stands in for a synthetic pool
    seed: 21,
    naming: '2021',
    dims: DIMS,
  });
  siteData = [];
  poolFile = path.join(root, 'pool32.fss');
  await buildSliceStore({
    dataDir: phantom.sites[SITE_COUNT]!.dir,
    out: poolFile,
    preset: 'cpu32',
    testFraction: 0,
  });
  for (const [i, site] of phantom.sites.slice(0, SITE_COUNT).entries()) {
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
    siteData.push({
      dir,
      trainSlices16: await trainSlicesOf(path.join(dir, 'cpu16.fss')),
    });
  }
});
after(async () => {
  if (dataRoot) await rm(dataRoot, { recursive: true, force: true });
});

for (const dialect of testDialects()) {
  describe(`a study from REST to pool with real site handlers (${dialect})`, () => {
    let fed: Federation;
    let sites: EnrolledSite[];
    const agents = new Map<string, SiteAgent>();

    const startAgent = async (index: number) => {
      const site = sites[index]!;
      const dataDir = siteData[index]!.dir;
      const agent = await fed.startAgent(site, {
        site: { ...site.state, dataDir },
        handlers: registry(),
        // the hello's counts are the agent's own (the coordinator bounds a round's trainSlices by them)
        describe: async () => ({
          capabilities: machineCapabilities(['wasm']),
          dataset: await summarizeDataset(dataDir, silentLogger),
        }),
      });
      await agent.waitReady();
      agents.set(site.siteId, agent);
      return agent;
    };

    before(async () => {
      fed = await startFederation(dialect);
      sites = [];
      for (let i = 0; i < SITE_COUNT; i++) sites.push(await fed.enroll(`flow-site-${i + 1}`));
      for (let i = 0; i < SITE_COUNT; i++) await startAgent(i);
    });
    after(() => fed?.dispose());

    const siteIds = (n = SITE_COUNT) => sites.slice(0, n).map((s) => s.siteId);
    const dataOf = (siteId: string) => siteData[sites.findIndex((s) => s.siteId === siteId)]!;
    const blob = (sha256: string) => readFile(fed.blobs().store.pathOf(sha256));

    async function createStudy(body: Json): Promise<string> {
      const res = await fed.coordinator.request('POST', '/api/studies', { token: fed.admin, body });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.id as string;
    }

    async function getStudy(id: string): Promise<StudyView> {
      const res = await fed.coordinator.request('GET', `/api/studies/${id}`, { token: fed.admin });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body as StudyView;
    }

    async function waitForStudy(id: string): Promise<StudyView> {
      return waitFor(
        async () => {
          const study = await getStudy(id);
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

    const jobsOf = (studyId: string, kind: 'train-round' | 'sample') => fed.jobs().list({ studyId, kind });
    const inputOf = (job: Job, role: string) => job.inputs.find((i) => i.role === role);

    /** Every pooled slice store: `perSite` slices of 16², annotation bytes only 0/51/102/204, provenance kept. */
    async function checkPool(study: StudyView, expectedSites: string[], perSite: number) {
      assert.deepEqual(sorted(study.pool.sites.map((p) => p.siteId)), sorted(expectedSites));
      assert.equal(study.pool.total, perSite * expectedSites.length);
      const rows = await fed.app.get(StudiesService).poolOf(study.id);
      const valid = new Set(ANNOTATION_OF_CANONICAL);
      for (const entry of study.pool.sites) {
        assert.equal(entry.count, perSite);
        assert.equal(entry.generator, 'stylegan2');
        assert.equal(entry.seed, sampleSeed(study.seed, entry.siteId));
        const row = rows.find((r) => r.siteId === entry.siteId)!;
        assert.equal(row.studyId, study.id);
        const job = await fed.jobs().get(entry.jobId);
        assert.equal(job.siteId, entry.siteId, 'the pooled samples come from that site');
        assert.equal((job.payload as { seed: number }).seed, entry.seed);

        const reader = await SliceStoreReader.open(fed.blobs().store.pathOf(entry.sha256));
        try {
          assert.equal(reader.count, perSite);
          assert.equal(reader.meta.size, 16);
          const channels = reader.meta.channels.length;
          const bytes = await reader.readRange(0, reader.count);
          assert.equal(bytes.length, perSite * 16 * 16 * channels);
          for (let i = channels - 1; i < bytes.length; i += channels) {
            if (!valid.has(bytes[i]!)) assert.fail(`site ${entry.siteId}: annotation byte ${bytes[i]}`);
          }
        } finally {
          await reader.close();
        }
        const records = await fed.db().getRepository(BlobRecord).findBy({ sha256: entry.sha256 });
        const record = records.find((r) => r.kind === 'samples' && r.siteId === entry.siteId);
        assert.ok(record, 'a samples blob record of the site');
        assert.deepEqual(
          [record.meta.studyId, record.meta.generator, record.meta.seed, record.meta.count],
          [study.id, 'stylegan2', entry.seed, perSite],
        );
      }
    }

    const generatorStudy = (extra: Json = {}): Json => ({
      name: 'flow generator',
      model: { task: 'generator', model: 'stylegan2', profile: 'tiny' },
      mode: 'fedavg',
      rounds: 2,
      localSteps: 2,
      batchSize: 4,
      samplesPerSite: 8,
      siteIds: siteIds(),
      seed: 7,
      ...extra,
    });

    it('a FedAvg StyleGAN 2 study runs to done: every site in every round, averaged weights, a valid pool', async () => {
      const id = await createStudy(generatorStudy());
      const study = await waitForStudy(id);
      const rounds = study.roundHistory;
      assert.deepEqual(
        rounds.map((r) => [r.index, r.state, sorted(r.contributors)]),
        [0, 1].map((i) => [i, 'done', sorted(siteIds())]),
      );
      for (const round of rounds) {
        for (const siteId of siteIds()) {
          const c = round.contributions[siteId]!;
          // the FedAvg weight is the site's own count of training slices, as the handler reports it
          assert.equal(c.trainSlices, dataOf(siteId).trainSlices16, `round ${round.index} site ${siteId}`);
          assert.equal(c.steps, 2);
          assert.ok(c.emaSha256, 'StyleGAN 2 keeps an EMA');
        }
        for (const role of ['weights', 'ema'] as const) {
          const sha = role === 'weights' ? round.outputWeightsSha256! : round.outputEmaSha256!;
          assert.ok(sha, `round ${round.index} ${role}`);
          const parts = await Promise.all(
            round.participants.map(async (siteId) => {
              const c = round.contributions[siteId]!;
              return {
                blob: await blob(role === 'weights' ? c.weightsSha256 : c.emaSha256!),
                weight: c.trainSlices,
              };
            }),
          );
          const unweighted = assertWeightedAverage(await blob(sha), parts, `round ${round.index} ${role}`);
          if (role === 'weights') assert.ok(unweighted > 1e-4, `the sites' weighting shows (${unweighted})`);
        }
      }
      const [r0, r1] = rounds as [RoundView, RoundView];
      assert.equal(r0.inputWeightsSha256, null);
      assert.equal(r1.inputWeightsSha256, r0.outputWeightsSha256);
      assert.equal(r1.inputEmaSha256, r0.outputEmaSha256);
      assert.notEqual(r1.outputWeightsSha256, r0.outputWeightsSha256);
      assert.ok(
        maxAbsDifference(await blob(r1.outputWeightsSha256!), await blob(r0.outputWeightsSha256!)) > 0,
      );

      // round 1 trained from round 0's global weights; the samples come from the final global model and its EMA
      const train = await jobsOf(id, 'train-round');
      assert.equal(train.length, 2 * SITE_COUNT);
      for (const job of train) {
        assert.equal(job.state, 'done');
        const input = inputOf(job, 'global-weights');
        if ((job.payload as { round: number }).round === 0) assert.equal(input, undefined);
        else {
          assert.equal(input?.sha256, r0.outputWeightsSha256);
          assert.equal(inputOf(job, 'ema')?.sha256, r0.outputEmaSha256);
        }
      }
      const samples = await jobsOf(id, 'sample');
      assert.equal(samples.length, SITE_COUNT);
      for (const job of samples) {
        assert.equal(inputOf(job, 'weights')?.sha256, r1.outputWeightsSha256);
        assert.equal(inputOf(job, 'ema')?.sha256, r1.outputEmaSha256);
      }
      await checkPool(study, siteIds(), 8);
    });

    it("in 'local' mode every site trains on and samples from its own weights", async () => {
      const ids = siteIds(2);
      const id = await createStudy(
        generatorStudy({ mode: 'local', siteIds: ids, samplesPerSite: 4, seed: 8 }),
      );
      const study = await waitForStudy(id);
      const [r0, r1] = study.roundHistory as [RoundView, RoundView];
      for (const round of [r0, r1]) {
        assert.deepEqual(sorted(round.contributors), sorted(ids));
        assert.equal(round.outputWeightsSha256, null, 'nothing is averaged in local mode');
      }
      const train = await jobsOf(id, 'train-round');
      const samples = await jobsOf(id, 'sample');
      for (const siteId of ids) {
        const own0 = r0.contributions[siteId]!;
        const own1 = r1.contributions[siteId]!;
        const round1 = train.find(
          (j) => j.siteId === siteId && (j.payload as { round: number }).round === 1,
        )!;
        assert.equal(inputOf(round1, 'global-weights')?.sha256, own0.weightsSha256);
        assert.equal(inputOf(round1, 'ema')?.sha256, own0.emaSha256);
        const sample = samples.find((j) => j.siteId === siteId)!;
        assert.equal(sample.state, 'done');
        assert.equal(inputOf(sample, 'weights')?.sha256, own1.weightsSha256);
        assert.equal(inputOf(sample, 'ema')?.sha256, own1.emaSha256);
      }
      // the sites' models really are their own
      const [a, b] = ids as [string, string];
      assert.notEqual(r1.contributions[a]!.weightsSha256, r1.contributions[b]!.weightsSha256);
      await checkPool(study, ids, 4);
    });

    it('a FedAvg U-Net study (real/synthetic mix) ends with a model that every site evaluates', async () => {
      const ids = siteIds(2);
      const pool = await fed.blobs().storeFile(poolFile, { kind: 'audit-pool' });
      const id = await createStudy({
        name: 'flow segmenter',
        model: { task: 'segmenter', model: 'unet', profile: 'tiny' },
        mode: 'fedavg',
        rounds: 2,
        localSteps: 2,
        batchSize: 4,
        siteIds: ids,
        seed: 9,
        data: { syntheticShare: 0.5, totalSlices: 12 },
        syntheticPoolSha256: pool.sha256,
      });
      const study = await waitForStudy(id);
      const last = study.roundHistory[1]!;
      for (const round of study.roundHistory) {
        assert.deepEqual(sorted(round.contributors), sorted(ids));
        // every site trained on the mix it was asked for: 6 real + 6 pool slices
        for (const siteId of ids) assert.equal(round.contributions[siteId]!.trainSlices, 12);
      }
      for (const job of await jobsOf(id, 'train-round')) {
        assert.deepEqual(inputOf(job, 'synthetic-pool'), {
          role: 'synthetic-pool',
          sha256: pool.sha256,
          size: pool.size,
          kind: 'synthetic-pool',
        });
      }
      assert.ok(study.modelSha256, 'the study has a model');
      assert.equal(study.modelSha256, last.outputWeightsSha256);
      assert.equal(last.outputEmaSha256, null, 'a U-Net keeps no EMA');
      const model = decodeWeights(await blob(study.modelSha256));
      assert.equal(model.manifest.architecture.name, 'unet');
      const records = await fed.db().getRepository(BlobRecord).findBy({ sha256: study.modelSha256 });
      assert.ok(records.some((r) => r.kind === 'segmenter' && r.meta.studyId === id));
      const final = await fed.app.get(StudiesService).finalWeightsOf(id);
      assert.equal(final?.global?.weights, study.modelSha256);

      const size = (await fed.blobs().stat(study.modelSha256))!.size;
      const evaluations = await Promise.all(
        ids.map((siteId) =>
          fed.jobs().enqueue(
            siteId,
            'evaluate',
            { studyId: id, label: 'unet/synthetic' },
            {
              inputs: [{ role: 'segmenter', sha256: study.modelSha256!, size, kind: 'segmenter' }],
              studyId: id,
              maxAttempts: 1,
            },
          ),
        ),
      );
      for (const enqueued of evaluations) {
        const job = await waitFor(
          async () => {
            const j = await fed.jobs().get(enqueued.id);
            return j.state === 'done' || j.state === 'failed' ? j : undefined;
          },
          'an evaluate job',
          120_000,
          100,
        );
        assert.equal(job.state, 'done', JSON.stringify(job.error));
        const summary = evaluationSummarySchema.parse(job.result!.summary);
        assert.ok(summary.subjects >= 1 && summary.slices > 0, JSON.stringify(summary));
        const dice = job.result!.metrics!.diceWT!;
        assert.ok(dice >= 0 && dice <= 1, `diceWT ${dice}`);
        assert.equal(job.result!.metrics!.subjects, summary.subjects);
      }
    });

    it('minSites: a stopped site misses the round that closes at its deadline, then takes the next one', async () => {
      const [a, b, c] = siteIds() as [string, string, string];
      const orchestrator = fed.app.get(StudyOrchestrator);
      await agents.get(c)!.stop('offline for the test');
      const id = await createStudy(
        generatorStudy({ rounds: 2, minSites: 2, roundTimeoutMs: 1_000, samplesPerSite: 4, seed: 10 }),
      );
      // the two live sites finish round 0; the third site's job waits, and the round waits for it
      await waitFor(
        async () => {
          const train = await jobsOf(id, 'train-round');
          return train.filter((j) => j.state === 'done').length === 2 ? train : undefined;
        },
        'the live sites to finish round 0',
        120_000,
        100,
      );
      await orchestrator.tick();
      let study = await getStudy(id);
      assert.equal(study.roundHistory.length, 1, 'before its deadline the round waits for the third site');
      assert.equal(study.roundHistory[0]!.state, 'open');

      fed.clock.advance(1_500);
      await orchestrator.tick();
      study = await getStudy(id);
      const r0 = study.roundHistory[0]!;
      assert.equal(r0.state, 'done');
      assert.deepEqual(sorted(r0.participants), sorted([a, b, c]));
      assert.deepEqual(sorted(r0.contributors), sorted([a, b]));
      const missed = (await jobsOf(id, 'train-round')).find((j) => j.siteId === c)!;
      assert.equal(missed.state, 'failed');
      assert.equal(missed.error?.code, 'cancelled');

      // back online: the site gets round 1's job and the round waits for it (the clock stands still)
      await startAgent(2);
      study = await waitForStudy(id);
      const r1 = study.roundHistory[1]!;
      assert.deepEqual(sorted(r1.contributors), sorted([a, b, c]));
      assert.equal(r1.inputWeightsSha256, r0.outputWeightsSha256);
      const rejoined = (await jobsOf(id, 'train-round')).filter((j) => j.siteId === c && j.state === 'done');
      assert.deepEqual(
        rejoined.map((j) => (j.payload as { round: number }).round),
        [1],
      );
      assert.equal(inputOf(rejoined[0]!, 'global-weights')?.sha256, r0.outputWeightsSha256);
      await checkPool(study, [a, b, c], 4);
    });
  });
}
