// A job's upload after the agent restarts and the handler runs again (in-process agents, real coordinator): the
// rerun's bytes are what the coordinator ends up with — the transfer begun before is resumed only when the new bytes
// are the same (sha256), otherwise it is aborted and the new bytes are sent, and a role committed before with other
// bytes is uploaded again; kept copies are hard links of the outputs; an attempt replaced by a newer attempt of the
// job never writes the job's record.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BlobRecord } from '@fedsynth/coordinator/blobs/blob-record.entity';
import { testDialects } from '@fedsynth/coordinator/testing/test-database';
import {
  type JobHandler,
  JobHandlerRegistry,
  type SiteAgentEventMap,
  agentPaths,
  echoBlocks,
} from '@fedsynth/site-agent/agent/index';
import {
  type EnrolledSite,
  type Federation,
  ask,
  rawHello,
  startFederation,
  waitFor,
} from './federation-harness.js';

const KB = 1024;
const RECORD = 1024; // one "sample" of the test outputs
const CHUNK = 64 * KB;
type UploadDone = SiteAgentEventMap['upload:done'][0];

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** `count` records of pseudo-random bytes drawn from `seed`. */
function records(seed: string, count: number): Buffer {
  return Buffer.concat([...echoBlocks(seed, count * RECORD)]);
}

interface Variant {
  seed: string;
  /** records in the 'samples' output (a pre-check may withhold some) */
  count: number;
}

/**
 * Writes a small 'summary' output and a large 'samples' output (new files renamed into place, like the real
 * handlers) and uploads them in that order; its metrics count the samples it produced.
 */
function outputsHandler(variant: Variant): JobHandler {
  return async (ctx) => {
    const outputs = [];
    for (const [role, data] of [
      ['summary', records(`${variant.seed}:summary`, 2)],
      ['samples', records(variant.seed, variant.count)],
    ] as const) {
      const file = path.join(ctx.workDir, `${role}.bin`);
      await writeFile(`${file}.tmp`, data);
      await rename(`${file}.tmp`, file);
      outputs.push(await ctx.upload({ file }, { role, kind: 'job-output' }));
    }
    return { outputs, metrics: { count: variant.count } };
  };
}

function registry(handler: JobHandler): JobHandlerRegistry {
  return new JobHandlerRegistry().register('echo-upload', handler);
}

async function waitState(fed: Federation, jobId: string, state: string, timeoutMs = 30_000) {
  return waitFor(
    async () => {
      const job = await fed.jobs().get(jobId);
      return job.state === state ? job : undefined;
    },
    `job ${jobId} to be ${state}`,
    timeoutMs,
  );
}

/**
 * Runs the job on a slow agent until `chunks` chunks of its 'samples' upload are acknowledged, then stops that agent
 * (its record is kept) and returns what it left behind.
 */
async function startAndStopMidUpload(fed: Federation, site: EnrolledSite, variant: Variant, chunks: number) {
  const first = await fed.startAgent(site, {
    handlers: registry(outputsHandler(variant)),
    upload: { chunkSize: CHUNK, bytesPerSecond: 512 * KB },
  });
  await first.waitReady();
  const reached = new Promise<void>((resolve) =>
    first.events.on('upload:progress', ({ role, progress }) => {
      if (role === 'samples' && progress.chunksDone >= chunks) resolve();
    }),
  );
  const job = await fed.jobs().enqueue(site.siteId, 'echo-upload', {});
  await reached;
  await first.stop('restart');
  const [record] = await first.store.list();
  assert.ok(record, 'the job record is kept for the next run');
  assert.equal(record.job.id, job.id);
  const work = path.join(agentPaths(site.stateDir).work, job.id);
  return { job, record, work };
}

for (const dialect of testDialects()) {
  describe(`upload of a job rerun after an agent restart (${dialect})`, () => {
    let fed: Federation;

    before(async () => {
      fed = await startFederation(dialect);
    });
    after(() => fed?.dispose());

    it('rerun with the same bytes resumes the transfer begun before; the kept copy is a hard link', async () => {
      const site = await fed.enroll('same-bytes-site');
      const variant = { seed: 'same', count: 2048 }; // 2 MiB: 32 chunks
      const { job, record, work } = await startAndStopMidUpload(fed, site, variant, 6);
      const samples = record.uploads.samples!;
      assert.equal(record.uploads.summary?.committed, true);
      assert.equal(samples.committed, false);
      // one kept copy (the committed summary's was removed), the same inode as the handler's output
      assert.deepEqual(await readdir(path.join(work, '.uploads')), [samples.transferId]);
      const keptStat = await stat(path.join(work, '.uploads', samples.transferId));
      assert.equal(keptStat.ino, (await stat(path.join(work, 'samples.bin'))).ino, 'a hard link, not a copy');

      const second = await fed.startAgent(site, { handlers: registry(outputsHandler(variant)) });
      const uploads: UploadDone[] = [];
      second.events.on('upload:done', (e) => uploads.push(e));
      const done = await waitState(fed, job.id, 'done');
      assert.deepEqual(
        uploads.map((u) => u.role),
        ['samples'],
        'the committed summary is not sent again',
      );
      const { result } = uploads[0]!;
      const total = (variant.count * RECORD) / CHUNK;
      assert.ok(result.resumedFromBytes >= 6 * CHUNK, `resumed from ${result.resumedFromBytes} bytes`);
      assert.ok(
        result.chunksSent <= total - 6,
        `${result.chunksSent} of ${total} chunks sent after the restart`,
      );
      assert.equal(result.transferId, samples.transferId, 'the same transfer');
      const expected = sha256(records('same', variant.count));
      assert.equal(done.result?.outputs.find((o) => o.role === 'samples')?.sha256, expected);
      assert.equal(await fed.db().getRepository(BlobRecord).countBy({ jobId: job.id, role: 'samples' }), 1);
      await second.stop();
    });

    it('rerun with other bytes uploads the new bytes: the old transfer is aborted, a committed role sent again', async () => {
      const site = await fed.enroll('other-bytes-site');
      const { job, record } = await startAndStopMidUpload(fed, site, { seed: 'old', count: 2048 }, 6);
      const old = record.uploads.samples!;
      const oldSummary = record.uploads.summary!;
      assert.equal(oldSummary.committed, true);

      // the rerun produces other samples (e.g. a stricter pre-check withholds more), and another summary
      const rerun = { seed: 'new', count: 1500 };
      const second = await fed.startAgent(site, { handlers: registry(outputsHandler(rerun)) });
      const uploads: UploadDone[] = [];
      second.events.on('upload:done', (e) => uploads.push(e));
      const done = await waitState(fed, job.id, 'done');
      await second.stop();

      assert.deepEqual(uploads.map((u) => u.role).sort(), ['samples', 'summary']);
      const samplesUpload = uploads.find((u) => u.role === 'samples')!.result;
      assert.equal(samplesUpload.resumedFromBytes, 0, 'new bytes are sent from the start');
      assert.notEqual(samplesUpload.transferId, old.transferId);

      const newSamples = records('new', rerun.count);
      const newSummary = records('new:summary', 2);
      assert.deepEqual(
        done.result?.outputs.map((o) => [o.role, o.sha256, o.size]).sort(),
        [
          ['samples', sha256(newSamples), newSamples.length],
          ['summary', sha256(newSummary), newSummary.length],
        ],
        'the coordinator holds the rerun outputs',
      );
      assert.notEqual(sha256(newSummary), oldSummary.sha256);
      // the metrics came from the rerun: they describe the blob the coordinator holds
      const pooled = await readFile(fed.blobs().store.pathOf(sha256(newSamples)));
      assert.equal(sha256(pooled), sha256(newSamples));
      assert.equal(done.result?.metrics?.count, pooled.length / RECORD);
      // the old samples never became a blob; the aborted transfer is gone from the coordinator's staging
      const blobs = await fed.db().getRepository(BlobRecord).findBy({ jobId: job.id, role: 'samples' });
      assert.deepEqual(
        blobs.map((b) => b.sha256),
        [sha256(newSamples)],
      );
      const raw = await fed.connectRaw({ token: await fed.mint(site) });
      assert.ok(raw.socket);
      assert.equal((await ask(raw.socket, 'site:hello', rawHello())).ok, true);
      const status = await ask(raw.socket, 'transfer:status', { transferId: old.transferId });
      assert.equal(status.ok, true);
      assert.equal(status.state, 'unknown', 'the superseded transfer was aborted');
      raw.socket.close();
    });

    it('an attempt replaced by a newer attempt of the job does not write the job record', async () => {
      const site = await fed.enroll('replaced-site');
      const entered = new Set<number>();
      const reached = (attempt: number) =>
        waitFor(() => entered.has(attempt) || undefined, `attempt ${attempt} to reach its upload`);
      const gates = new Map<number, { promise: Promise<void>; open: () => void }>();
      for (const attempt of [1, 2]) {
        let open!: () => void;
        const promise = new Promise<void>((resolve) => (open = resolve));
        gates.set(attempt, { promise, open });
      }
      let staleUpload: Promise<unknown> | undefined;
      const handler: JobHandler = async (ctx) => {
        const attempt = ctx.job.attempt;
        const file = path.join(ctx.workDir, `out-${attempt}.bin`);
        await writeFile(file, records(`attempt-${attempt}`, 64));
        entered.add(attempt);
        await gates.get(attempt)!.promise; // (ignores the abort, like a handler busy in a long step)
        const upload = ctx.upload({ file }, { role: 'out', kind: 'job-output' });
        if (attempt === 1) staleUpload = upload.catch((e: unknown) => e);
        return { outputs: [await upload] };
      };
      const agent = await fed.startAgent(site, { handlers: registry(handler) });
      await agent.waitReady();
      const job = await fed.jobs().enqueue(site.siteId, 'echo-upload', {}, { maxAttempts: 3 });
      await reached(1);
      // attempt 1's lease runs out: the coordinator requeues the job and offers attempt 2, which takes its place
      fed.clock.advance(fed.jobs().options.leaseTtlMs + 1);
      await fed.jobs().sweep();
      await reached(2);
      const recordOf = async () => (await agent.store.list()).find((r) => r.job.id === job.id);
      await waitFor(async () => (await recordOf())?.job.attempt === 2 || undefined, 'attempt 2 recorded');

      gates.get(1)!.open(); // the stale attempt now tries to upload
      await waitFor(() => staleUpload, 'the stale upload');
      const staleError = await staleUpload;
      assert.ok(staleError instanceof Error, 'the stale attempt cannot upload');
      const record = await recordOf();
      assert.equal(record?.job.attempt, 2, 'the record is still attempt 2');
      assert.deepEqual(record?.uploads, {}, 'with no upload of attempt 1');

      gates.get(2)!.open();
      const done = await waitState(fed, job.id, 'done');
      assert.equal(done.attempt, 2);
      assert.deepEqual(done.result?.outputs, [
        { role: 'out', sha256: sha256(records('attempt-2', 64)), size: 64 * RECORD },
      ]);
      assert.equal(await fed.db().getRepository(BlobRecord).countBy({ jobId: job.id }), 1);
      await agent.stop();
    });
  });
}
