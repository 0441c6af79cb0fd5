// The site's study job handlers through a real coordinator and a real in-process agent on phantom BraTS data:
// train-round (tiny StyleGAN 2 and U-Net; from global weights; a real/synthetic mix), sample (valid annotation
// bytes) and evaluate (a summary that fits the contract and carries no subject id); bad payloads fail with
// bad_payload. The site's slices are cut once per preset into the state dir and reused.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BlobRecord } from '@fedsynth/coordinator/blobs/blob-record.entity';
import type { JobState } from '@fedsynth/coordinator/jobs/job.entity';
import { decodeWeights } from '@fedsynth/common/ml/weights/index';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { evaluationSummarySchema } from '@fedsynth/common/protocol/job-payloads';
import type { JobKind } from '@fedsynth/common/protocol/index';
import { ANNOTATION_OF_CANONICAL, SliceStoreReader, buildSliceStore } from '@fedsynth/common/slices/index';
import {
  JobHandlerRegistry,
  type SiteAgent,
  evaluateHandler,
  sampleHandler,
  trainRoundHandler,
} from '@fedsynth/site-agent/agent/index';
import { type EnrolledSite, type Federation, startFederation, waitFor } from './federation-harness.js';

type Output = { role: string; sha256: string; size: number };

function maxAbsDifference(a: Buffer, b: Buffer): number {
  const ta = decodeWeights(a).tensors;
  const tb = new Map(decodeWeights(b).tensors.map((t) => [t.name, t]));
  let max = 0;
  for (const t of ta) {
    const o = tb.get(t.name)!;
    for (let i = 0; i < t.data.length; i++) max = Math.max(max, Math.abs(t.data[i]! - o.data[i]!));
  }
  return max;
}

describe('study job handlers on a site (sqlite)', () => {
  let fed: Federation;
  let site: EnrolledSite;
  let agent: SiteAgent;
  let caseIds: string[];
  let poolFile: string;
  const stages = new Map<string, Set<string>>();

  before(async () => {
    fed = await startFederation('sqlite');
    site = await fed.enroll('study-site');
    const phantom = await writePhantomSites({
      out: path.join(fed.tmp, 'phantom'),
      sites: 1,
      cases: 3,
      seed: 11,
      naming: '2021',
    });
    caseIds = phantom.sites[0]!.cases;
    // another phantom site's slices stand in for a synthetic pool (32², as the tiny U-Net reads)
    const other = await writePhantomSites({
      out: path.join(fed.tmp, 'other'),
      sites: 1,
      cases: 1,
      seed: 12,
      naming: '2023',
    });
    poolFile = path.join(fed.tmp, 'pool.fss');
    await buildSliceStore({ dataDir: other.sites[0]!.dir, out: poolFile, preset: 'cpu32', testFraction: 0 });
    const registry = new JobHandlerRegistry()
      .register('train-round', trainRoundHandler)
      .register('sample', sampleHandler)
      .register('evaluate', evaluateHandler);
    agent = await fed.startAgent(site, {
      site: { ...site.state, dataDir: phantom.sites[0]!.dir },
      handlers: registry,
    });
    await agent.waitReady();
    fed.jobEvents().on('progress', (e: { job: { id: string; progress?: { stage?: string } | null } }) => {
      const stage = e.job.progress?.stage;
      if (!stage) return;
      if (!stages.has(e.job.id)) stages.set(e.job.id, new Set());
      stages.get(e.job.id)!.add(stage);
    });
  });
  after(() => fed?.dispose());

  async function run(
    kind: JobKind,
    payload: Record<string, unknown>,
    inputs: Array<Output & { kind: 'global-weights' | 'segmenter' | 'audit-pool' }> = [],
    expect: JobState = 'done',
  ) {
    const job = await fed.jobs().enqueue(site.siteId, kind, payload as never, { inputs, maxAttempts: 1 });
    const finished = await waitFor(
      async () => {
        const j = await fed.jobs().get(job.id);
        return j.state === 'done' || j.state === 'failed' ? j : undefined;
      },
      `${kind} job to finish`,
      240_000,
      200,
    );
    assert.equal(finished.state, expect, JSON.stringify(finished.error));
    return finished;
  }

  const blob = (sha256: string) => readFile(fed.blobs().store.pathOf(sha256));
  const output = (job: { result: { outputs: Output[] } | null }, role: string) => {
    const o = job.result!.outputs.find((x) => x.role === role);
    assert.ok(o, `output ${role}`);
    return { ...o, sha256: o.sha256, size: o.size, role: o.role };
  };

  let ganWeights: Output;
  let ganEma: Output;
  let unetRound0: Output;

  it('train-round (tiny StyleGAN 2): trains on the site slices, uploads weights + EMA as round updates', async () => {
    const job = await run('train-round', {
      studyId: 'study-1',
      round: 0,
      model: { task: 'generator', model: 'stylegan2', profile: 'tiny' },
      localSteps: 2,
      batchSize: 4,
      seed: 5,
    });
    ganWeights = output(job, 'weights');
    ganEma = output(job, 'ema');
    const metrics = job.result!.metrics!;
    assert.equal(metrics.steps, 2);
    assert.ok(metrics.trainSlices! > 0 && Number.isFinite(metrics.finalLoss) && metrics.seconds! > 0);
    const weights = decodeWeights(await blob(ganWeights.sha256));
    assert.equal(weights.manifest.architecture.name, 'gan');
    assert.equal(
      (weights.manifest.architecture.config as { architecture: string }).architecture,
      'stylegan2',
    );
    assert.equal(decodeWeights(await blob(ganEma.sha256)).manifest.architecture.name, 'stylegan2');
    const records = await fed.db().getRepository(BlobRecord).findBy({ jobId: job.id });
    const weightsRecord = records.find((r) => r.role === 'weights')!;
    assert.equal(weightsRecord.kind, 'round-update');
    assert.equal(weightsRecord.meta.studyId, 'study-1');
    assert.equal(weightsRecord.meta.round, 0);
    assert.equal(weightsRecord.meta.model, 'stylegan2');
    const seen = stages.get(job.id) ?? new Set();
    assert.ok(seen.has('train'), `stages ${[...seen]}`);
    // the site's slices were cut once into the state dir, and are private: no upload carries them
    await stat(path.join(site.stateDir, 'slices', 'cpu16.fss'));
    assert.deepEqual(records.map((r) => r.role).sort(), ['ema', 'weights']);
  });

  it('train-round (tiny U-Net) continues from the global weights it is given', async () => {
    const payload = {
      studyId: 'study-2',
      model: { task: 'segmenter', model: 'unet', profile: 'tiny' },
      batchSize: 4,
    };
    const r0 = await run('train-round', { ...payload, round: 0, localSteps: 6, seed: 1 });
    unetRound0 = output(r0, 'weights');
    const w0 = await blob(unetRound0.sha256);
    assert.equal(decodeWeights(w0).manifest.architecture.name, 'unet');
    const stamp = await stat(path.join(site.stateDir, 'slices', 'cpu32.json'));

    const r1 = await run('train-round', { ...payload, round: 1, localSteps: 1, seed: 1 }, [
      { ...unetRound0, role: 'global-weights', kind: 'global-weights' },
    ]);
    const w1 = await blob(output(r1, 'weights').sha256);
    const fresh = await run('train-round', { ...payload, round: 0, localSteps: 1, seed: 2 });
    const f = await blob(output(fresh, 'weights').sha256);
    const moved = maxAbsDifference(w1, w0);
    assert.ok(moved > 0, 'the round changed the weights it was given');
    assert.ok(moved < maxAbsDifference(f, w0), `from W0: ${moved}; fresh: ${maxAbsDifference(f, w0)}`);
    // the cached slices were reused, not cut again
    assert.equal((await stat(path.join(site.stateDir, 'slices', 'cpu32.json'))).mtimeMs, stamp.mtimeMs);
  });

  it('train-round with a data mix trains on the requested number of real and synthetic slices', async () => {
    const pool = await fed.blobs().storeFile(poolFile, { kind: 'audit-pool' });
    const poolInput = {
      role: 'synthetic-pool',
      sha256: pool.sha256,
      size: pool.size,
      kind: 'audit-pool' as const,
    };
    const base = {
      studyId: 'study-3',
      round: 0,
      model: { task: 'segmenter', model: 'unet', profile: 'tiny' },
      localSteps: 1,
      batchSize: 2,
      seed: 4,
    };
    const mixed = await run('train-round', { ...base, data: { syntheticShare: 0.5, totalSlices: 12 } }, [
      poolInput,
    ]);
    assert.equal(mixed.result!.metrics!.trainSlices, 12);
    const reader = await SliceStoreReader.open(poolFile);
    const poolCount = reader.count;
    await reader.close();
    const realOnly = await run('train-round', base);
    const both = await run('train-round', { ...base, data: { both: true } }, [poolInput]);
    assert.equal(both.result!.metrics!.trainSlices, realOnly.result!.metrics!.trainSlices! + poolCount);
    const tooMany = await run(
      'train-round',
      { ...base, data: { syntheticShare: 1, totalSlices: poolCount + 1 } },
      [poolInput],
      'failed',
    );
    assert.equal(tooMany.error!.code, 'bad_data_mix');
  });

  it('sample draws n slices from the round weights whose annotation bytes are valid labels', async () => {
    const job = await run(
      'sample',
      {
        studyId: 'study-1',
        model: { task: 'generator', model: 'stylegan2', profile: 'tiny' },
        n: 6,
        seed: 3,
      },
      [
        { ...ganWeights, role: 'weights', kind: 'global-weights' },
        { ...ganEma, role: 'ema', kind: 'global-weights' },
      ],
    );
    // The local memorization pre-check ran: what was uploaded plus what it withheld is what was drawn.
    const metrics = job.result!.metrics!;
    assert.equal(metrics.drawn, 6);
    assert.equal(metrics.count! + metrics.withheldByPrecheck!, 6);
    assert.ok(metrics.count! >= 1);
    assert.ok(stages.get(job.id)?.has('precheck'), `stages ${[...(stages.get(job.id) ?? [])]}`);
    const samples = output(job, 'samples');
    const reader = await SliceStoreReader.open(fed.blobs().store.pathOf(samples.sha256));
    const count = metrics.count!;
    try {
      assert.equal(reader.count, count);
      assert.equal(reader.meta.size, 16);
      const bytes = await reader.readRange(0, count);
      const channels = reader.meta.channels.length;
      const valid = new Set(ANNOTATION_OF_CANONICAL);
      for (let i = channels - 1; i < bytes.length; i += channels) {
        assert.ok(valid.has(bytes[i]!), `annotation byte ${bytes[i]}`);
      }
    } finally {
      await reader.close();
    }
    const record = (await fed.db().getRepository(BlobRecord).findBy({ jobId: job.id }))[0]!;
    assert.equal(record.kind, 'samples');
    assert.deepEqual(
      [record.meta.studyId, record.meta.generator, record.meta.seed, record.meta.count],
      ['study-1', 'stylegan2', 3, count],
    );
  });

  it("evaluate returns a contract summary of the site's test subjects without any subject id", async () => {
    const job = await run('evaluate', { studyId: 'study-2', label: 'unet/real-fedavg' }, [
      { ...unetRound0, role: 'segmenter', kind: 'segmenter' },
    ]);
    const summary = evaluationSummarySchema.parse(job.result!.summary);
    assert.ok(summary.subjects >= 1 && summary.slices > 0);
    assert.deepEqual(
      summary.perSubject.map((s) => s.subject),
      Array.from({ length: summary.subjects }, (_, i) => i + 1),
    );
    const text = JSON.stringify(job.result);
    for (const id of caseIds) assert.ok(!text.includes(id), `the result names ${id}`);
    assert.ok(!text.includes(fed.tmp), 'the result names a path');
    assert.ok(Number.isFinite(job.result!.metrics!.diceWT));
    assert.deepEqual(job.result!.outputs, []);
  });

  it('cancelling a running round stops its training and uploads nothing', async () => {
    const abandoned = new Promise<string>((resolve) =>
      agent.events.once('job:abandoned', (e) => resolve(e.reason)),
    );
    const job = await fed.jobs().enqueue(
      site.siteId,
      'train-round',
      {
        studyId: 'study-4',
        round: 0,
        model: { task: 'segmenter', model: 'unet', profile: 'tiny' },
        localSteps: 1_000_000,
        batchSize: 2,
        seed: 1,
      },
      { maxAttempts: 1 },
    );
    await waitFor(() => stages.get(job.id)?.has('train'), 'training to start', 120_000, 100);
    await fed.jobs().cancel(job.id, 'study stopped');
    assert.equal(await abandoned, 'cancelled');
    await waitFor(() => agent.activeJobIds().length === 0, 'the agent to drop the job', 60_000, 100);
    assert.deepEqual(await fed.db().getRepository(BlobRecord).findBy({ jobId: job.id }), []);
  });

  it('train-round of a multi-round study (rounds given) trains its round with the global schedule', async () => {
    const job = await run('train-round', {
      studyId: 'study-5',
      round: 1,
      rounds: 3,
      model: { task: 'generator', model: 'progan', profile: 'tiny' },
      localSteps: 1,
      batchSize: 2,
      seed: 2,
    });
    assert.equal(job.result!.metrics!.steps, 1);
    output(job, 'weights');
  });

  it('a site whose data folder is broken fails with private_data and a message naming no path', async () => {
    const broken = await fed.enroll('broken-site');
    const dataDir = path.join(fed.tmp, 'Saint Private Hospital', 'brats-missing');
    const brokenAgent = await fed.startAgent(broken, {
      site: { ...broken.state, dataDir },
      handlers: new JobHandlerRegistry().register('train-round', trainRoundHandler),
    });
    await brokenAgent.waitReady();
    const job = await fed.jobs().enqueue(
      broken.siteId,
      'train-round',
      {
        studyId: 'study-6',
        round: 0,
        model: { task: 'segmenter', model: 'unet', profile: 'tiny' },
        localSteps: 1,
        batchSize: 2,
        seed: 1,
      },
      { maxAttempts: 1 },
    );
    const failed = await waitFor(
      async () => {
        const j = await fed.jobs().get(job.id);
        return j.state === 'failed' || j.state === 'done' ? j : undefined;
      },
      'the broken site to fail',
      120_000,
      200,
    );
    assert.equal(failed.state, 'failed');
    assert.equal(failed.error!.code, 'private_data');
    const text = JSON.stringify(failed.error);
    assert.match(text, /could not read its private slices/);
    for (const leak of [fed.tmp, 'Private Hospital', 'brats-missing', broken.stateDir]) {
      assert.ok(!text.includes(leak), `the failure names ${leak}: ${text}`);
    }
    assert.ok(!/\/[\w.-]+\//.test(failed.error!.message), `a path in ${failed.error!.message}`);
  });

  it('a bad payload fails the job with bad_payload', async () => {
    for (const [kind, payload] of [
      ['train-round', { studyId: 's', round: 0, localSteps: 0, batchSize: 4, seed: 1 }],
      [
        'train-round',
        {
          studyId: 's',
          round: 2,
          rounds: 2,
          model: { task: 'segmenter', model: 'unet', profile: 'tiny' },
          localSteps: 1,
          batchSize: 2,
          seed: 1,
        },
      ],
      [
        'sample',
        { studyId: 's', model: { task: 'generator', model: 'gan9', profile: 'tiny' }, n: 1, seed: 1 },
      ],
      ['evaluate', { studyId: 's', label: 'x', extra: true }],
    ] as const) {
      const job = await run(kind, payload, [], 'failed');
      assert.equal(job.error!.code, 'bad_payload', `${kind}: ${JSON.stringify(job.error)}`);
      assert.equal(job.error!.retryable, false);
    }
  });
});
