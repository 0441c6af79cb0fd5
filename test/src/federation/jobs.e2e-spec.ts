// Jobs through the whole federation: offered → accepted → progress → upload (chunked, a few MB) → result → done with
// provenance; a connection dropped mid-upload resumes from the last acknowledged chunk; unanswered offers and expired
// leases requeue (manual clock); retries up to maxAttempts; a coordinator restart mid-job resumes it; job inputs go
// down to the site; cancellation reaches the site.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { BlobRecord } from '@fedsynth/coordinator/blobs/blob-record.entity';
import type { JobEventMap } from '@fedsynth/coordinator/jobs/job-events';
import type { JobState } from '@fedsynth/coordinator/jobs/job.entity';
import { testDialects } from '@fedsynth/coordinator/testing/test-database';
import {
  JobError,
  JobHandlerRegistry,
  type SiteAgentEventMap,
  echoSha256,
} from '@fedsynth/site-agent/agent/index';
import { type Federation, ask, rawHello, startFederation, waitFor } from './federation-harness.js';

const MB = 1024 * 1024;
type SendResultEvent = SiteAgentEventMap['upload:done'][0];

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Records the JobEvents of one job (re-subscribe after a restart). */
function recordTransitions(fed: Federation, jobId: string): string[] {
  const seen: string[] = [];
  for (const event of [
    'queued',
    'assigned',
    'progress',
    'uploading',
    'requeued',
    'done',
    'failed',
  ] as const) {
    fed.jobEvents().on(event, (e: JobEventMap[typeof event]) => {
      if (e.job.id === jobId && seen[seen.length - 1] !== event) seen.push(event);
    });
  }
  return seen;
}

async function waitState(fed: Federation, jobId: string, state: JobState, timeoutMs = 20_000) {
  return waitFor(
    async () => {
      const job = await fed.jobs().get(jobId);
      return job.state === state ? job : undefined;
    },
    `job ${jobId} to be ${state}`,
    timeoutMs,
  );
}

for (const dialect of testDialects()) {
  describe(`federation jobs and transfers (${dialect})`, () => {
    let fed: Federation;

    before(async () => {
      fed = await startFederation(dialect);
    });
    after(() => fed?.dispose());

    it('runs a job: offer → accept → progress → upload (chunked) → result → done, blob stored with provenance', async (t) => {
      const site = await fed.enroll('upload-site');
      const agent = await fed.startAgent(site, { upload: { chunkSize: 256 * 1024 } });
      await agent.waitReady();
      const bytes = 6 * MB;
      const done = new Promise<SendResultEvent>((resolve) => agent.events.once('upload:done', resolve));
      const job = await fed.jobs().enqueue(site.siteId, 'echo-upload', { bytes, seed: 'first' });
      const transitions = recordTransitions(fed, job.id);
      const finished = await waitState(fed, job.id, 'done');
      const upload = await done;

      assert.deepEqual(
        transitions.filter((e) => e !== 'progress'),
        ['assigned', 'uploading', 'done'],
        transitions.join(' → '),
      );
      assert.ok(transitions.includes('progress'));
      assert.equal(finished.attempt, 1);
      assert.equal(finished.leaseExpiresAt, null);
      assert.ok(finished.startedAt && finished.finishedAt);
      // the last progress that got through before the result (throttled to one per 50 ms here)
      assert.ok(finished.progress && finished.progress.fraction > 0.2, JSON.stringify(finished.progress));
      assert.ok(['upload', 'done'].includes(finished.progress.stage ?? ''), finished.progress.stage);
      const expected = echoSha256('first', bytes);
      assert.deepEqual(finished.result?.outputs, [{ role: 'echo', sha256: expected, size: bytes }]);
      assert.deepEqual(finished.result?.metrics, { bytes });

      const records = await fed.db().getRepository(BlobRecord).findBy({ jobId: job.id });
      assert.equal(records.length, 1);
      const [record] = records;
      assert.equal(record!.sha256, expected);
      assert.equal(record!.size, bytes);
      assert.equal(record!.kind, 'job-output');
      assert.equal(record!.role, 'echo');
      assert.equal(record!.siteId, site.siteId);
      assert.equal(record!.meta.seed, 'first');
      assert.equal(record!.meta.attempt, 1);
      const stored = await readFile(fed.blobs().store.pathOf(expected));
      assert.equal(stored.length, bytes);
      assert.equal(sha256(stored), expected, 'the stored bytes hash to the address');

      assert.equal(upload.result.chunksSent, 24);
      assert.equal(upload.result.resumedFromBytes, 0);
      const mbps = bytes / MB / (upload.result.elapsedMs / 1000);
      t.diagnostic(
        `upload through the gateway: ${bytes / MB} MiB in ${upload.result.elapsedMs.toFixed(0)} ms = ${mbps.toFixed(1)} MiB/s`,
      );
      const metrics = (await fed.coordinator.request('GET', '/metrics')).body as string;
      assert.match(
        metrics,
        new RegExp(`^fedsynth_bytes_received_total\\{kind="job-output"\\} ${bytes}$`, 'm'),
      );
      assert.match(metrics, /^fedsynth_job_duration_seconds_count\{kind="echo-upload"\} 1$/m);
      await agent.stop();
    });

    it('resumes an upload from the last acknowledged chunk after the connection drops mid-transfer', async (t) => {
      const site = await fed.enroll('flaky-site');
      const chunkSize = 64 * 1024;
      const bytes = 4 * MB; // 64 chunks
      const total = bytes / chunkSize;
      const perConnection = new Map<string, number[]>();
      fed.gateway().server.on('connection', (socket) => {
        const indices: number[] = [];
        perConnection.set(socket.id, indices);
        socket.use(([event, payload], next) => {
          if (event === 'transfer:chunk') indices.push((payload as { index: number }).index);
          next();
        });
      });
      const agent = await fed.startAgent(site, { upload: { chunkSize, bytesPerSecond: 8 * MB } });
      await agent.waitReady();
      let dropped = false;
      agent.events.on('upload:progress', ({ progress }) => {
        if (!dropped && progress.chunksDone >= 16) {
          dropped = true;
          agent.connection!.io.engine.close(); // the network goes away under the transfer
        }
      });
      const uploaded = new Promise<SendResultEvent>((resolve) => agent.events.once('upload:done', resolve));
      const job = await fed.jobs().enqueue(site.siteId, 'echo-upload', { bytes, seed: 'flaky' });
      const finished = await waitState(fed, job.id, 'done');
      const { result } = await uploaded;

      const connections = [...perConnection.values()].filter((c) => c.length > 0);
      assert.equal(connections.length, 2, 'chunks came over two connections');
      const [before, afterDrop] = connections as [number[], number[]];
      assert.ok(before.length >= 16 && before.length < total, `before the drop: ${before.length}`);
      assert.ok(
        afterDrop.length < total,
        `re-sent ${afterDrop.length} of ${total} chunks after reconnecting`,
      );
      assert.ok(
        afterDrop.length <= total - 16 + 8,
        `resumed near the last acknowledged chunk (${afterDrop.length})`,
      );
      assert.equal(new Set([...before, ...afterDrop]).size, total, 'every chunk arrived');
      t.diagnostic(
        `upload: ${before.length} chunk messages before the drop, ${afterDrop.length} after, of ${total}`,
      );
      assert.ok(result.resumedFromBytes >= 16 * chunkSize, `resumed from ${result.resumedFromBytes} bytes`);
      assert.ok(result.attempts >= 2);
      assert.equal(finished.attempt, 1, 'the job was not restarted');
      assert.equal(finished.result?.outputs[0]?.sha256, echoSha256('flaky', bytes));
      assert.equal(await fed.db().getRepository(BlobRecord).countBy({ jobId: job.id }), 1);
      await agent.stop();
    });

    it('an unanswered offer is made again; an expired lease requeues with attempt + 1, then fails at maxAttempts', async () => {
      const site = await fed.enroll('silent-site');
      const { socket } = await fed.connectRaw({ token: await fed.mint(site) });
      assert.ok(socket);
      const offers: Array<{ id: string; attempt: number }> = [];
      socket.on('job:offer', (msg: { job: { id: string; attempt: number } }) => offers.push(msg.job)); // no ack
      assert.equal((await ask(socket, 'site:hello', rawHello())).ok, true);
      const job = await fed.jobs().enqueue(site.siteId, 'echo-upload', { bytes: 1 }, { maxAttempts: 2 });
      const transitions = recordTransitions(fed, job.id);
      await waitFor(() => offers.length === 1, 'the first offer');
      assert.ok((await fed.jobs().get(job.id)).leaseExpiresAt, 'offered: the offer has a deadline');

      // (the coordinator's own sweeper may run first: the outcome is what counts)
      fed.clock.advance(fed.jobs().options.offerTtlMs + 1);
      await fed.jobs().sweep();
      await waitFor(() => offers.length === 2, 'the offer made again');
      assert.equal(offers[1]!.id, job.id);
      assert.equal(offers[1]!.attempt, 1);

      // accepted, then silence: the lease runs out
      const lease = await ask(socket, 'job:accept', { jobId: job.id, attempt: 1 });
      assert.equal(lease.ok, true);
      assert.equal((await fed.jobs().get(job.id)).state, 'assigned');
      assert.equal(
        (await ask(socket, 'job:progress', { jobId: job.id, attempt: 1, fraction: 0.1 })).ok,
        true,
      );
      fed.clock.advance(fed.jobs().options.leaseTtlMs + 1);
      await fed.jobs().sweep();
      const requeued = await fed.jobs().get(job.id);
      assert.equal(requeued.attempt, 2);
      assert.equal(requeued.error?.code, 'lease_expired');
      assert.equal(requeued.error?.attempt, 1);
      await waitFor(() => offers.length === 3, 'the offer of attempt 2');
      assert.equal(offers[2]!.attempt, 2);
      // the old attempt is fenced off
      assert.equal(
        (await ask(socket, 'job:progress', { jobId: job.id, attempt: 1, fraction: 0.2 })).code,
        'lease_lost',
      );
      assert.equal(
        (await ask(socket, 'job:result', { jobId: job.id, attempt: 1, outputs: [] })).code,
        'lease_lost',
      );

      assert.equal((await ask(socket, 'job:accept', { jobId: job.id, attempt: 2 })).ok, true);
      fed.clock.advance(fed.jobs().options.leaseTtlMs + 1);
      await fed.jobs().sweep();
      const failed = await fed.jobs().get(job.id);
      assert.equal(failed.state, 'failed');
      assert.equal(failed.error?.code, 'lease_expired');
      assert.deepEqual(transitions, [
        'queued',
        'assigned',
        'progress',
        'requeued',
        'queued',
        'assigned',
        'failed',
      ]);
      socket.close();
    });

    it('retries a retryable failure up to maxAttempts; a non-retryable one fails at once', async () => {
      const site = await fed.enroll('failing-site');
      let calls = 0;
      const handlers = new JobHandlerRegistry()
        .register('train-round', async () => {
          calls++;
          throw new JobError('out_of_memory', 'the GPU ran out of memory', true);
        })
        .register('evaluate', async () => {
          throw new JobError('bad_payload', 'no such checkpoint', false);
        });
      const agent = await fed.startAgent(site, { handlers });
      await agent.waitReady();
      const failedEvents: Array<JobEventMap['failed']> = [];
      fed.jobEvents().on('failed', (e) => failedEvents.push(e));

      const retried = await fed.jobs().enqueue(site.siteId, 'train-round', { round: 1 }, { maxAttempts: 3 });
      const final = await waitState(fed, retried.id, 'failed');
      assert.equal(calls, 3);
      assert.equal(final.attempt, 3);
      assert.equal(final.error?.code, 'out_of_memory');
      assert.equal(final.error?.retryable, true);

      const fatal = await fed.jobs().enqueue(site.siteId, 'evaluate', {}, { maxAttempts: 3 });
      const once = await waitState(fed, fatal.id, 'failed');
      assert.equal(once.attempt, 1);
      assert.equal(once.error?.code, 'bad_payload');
      assert.deepEqual(
        failedEvents.map((e) => [e.job.id, e.bySite]),
        [
          [retried.id, true],
          [fatal.id, true],
        ],
      );
      // kinds the site does not run are never offered to it
      const other = await fed.jobs().enqueue(site.siteId, 'audit', {});
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal((await fed.jobs().get(other.id)).state, 'queued');
      assert.equal((await fed.jobs().get(other.id)).leaseExpiresAt, null);
      await fed.jobs().cancel(other.id);
      await agent.stop();
    });

    it('sends a job input down to the site, resumably; a blob that is not an input is refused', async () => {
      const site = await fed.enroll('download-site');
      const weights = randomBytes(3 * MB + 12345);
      const record = await fed.blobs().storeBuffer(weights, { kind: 'global-weights', role: 'weights' });
      assert.equal(record.sha256, sha256(weights));
      const agent = await fed.startAgent(site);
      await agent.waitReady();
      const job = await fed
        .jobs()
        .enqueue(
          site.siteId,
          'echo-upload',
          { bytes: 1000, seed: 'with-input' },
          { inputs: [{ role: 'weights', sha256: record.sha256, size: record.size, kind: 'global-weights' }] },
        );
      const done = await waitState(fed, job.id, 'done');
      assert.deepEqual((done.result?.summary as { inputs: unknown[] }).inputs, [
        { role: 'weights', sha256: record.sha256, size: record.size, verified: true },
      ]);
      const local = await readFile(agent.downloads.pathOf(record.sha256));
      assert.equal(sha256(local), record.sha256);

      // a raw client may only fetch inputs of its own active jobs
      const raw = await fed.connectRaw({ token: await fed.mint(site) });
      assert.ok(raw.socket);
      await agent.stop(); // (the raw socket supersedes the agent's connection anyway)
      assert.equal((await ask(raw.socket, 'site:hello', rawHello())).ok, true);
      const other = await fed.jobs().enqueue(site.siteId, 'echo-upload', { bytes: 1 });
      await waitFor(async () => (await fed.jobs().get(other.id)).leaseExpiresAt, 'the offer');
      assert.equal((await ask(raw.socket, 'job:accept', { jobId: other.id, attempt: 1 })).ok, true);
      const refused = await ask(raw.socket, 'blob:fetch', {
        jobId: other.id,
        attempt: 1,
        sha256: record.sha256,
      });
      assert.equal(refused.code, 'unknown_blob');
      const notMine = await ask(raw.socket, 'blob:fetch', {
        jobId: job.id,
        attempt: 1,
        sha256: record.sha256,
      });
      assert.equal(notMine.code, 'lease_lost', 'a finished job fetches nothing');
      await fed.jobs().cancel(other.id);
      raw.socket.close();
    });

    it('resumes a download from the last acknowledged chunk after the connection drops', async (t) => {
      const site = await fed.enroll('download-drop-site');
      const weights = randomBytes(8 * MB);
      const record = await fed.blobs().storeBuffer(weights, { kind: 'segmenter', role: 'segmenter' });
      const chunksPerConnection = new Map<string, number>();
      fed.gateway().server.on('connection', (socket) => {
        chunksPerConnection.set(socket.id, 0);
        socket.onAnyOutgoing((event: string) => {
          if (event === 'transfer:chunk')
            chunksPerConnection.set(socket.id, chunksPerConnection.get(socket.id)! + 1);
        });
      });
      const agent = await fed.startAgent(site);
      await agent.waitReady();
      let dropped = false;
      agent.events.on('download:progress', (p) => {
        if (!dropped && p.chunksDone >= 3) {
          dropped = true;
          agent.connection!.io.engine.close();
        }
      });
      const job = await fed
        .jobs()
        .enqueue(
          site.siteId,
          'echo-upload',
          { bytes: 10, seed: 'download-drop' },
          { inputs: [{ role: 'segmenter', sha256: record.sha256, size: record.size, kind: 'segmenter' }] },
        );
      const done = await waitState(fed, job.id, 'done');
      assert.equal(
        (done.result?.summary as { inputs: Array<{ verified: boolean }> }).inputs[0]!.verified,
        true,
      );
      assert.equal(sha256(await readFile(agent.downloads.pathOf(record.sha256))), record.sha256);
      const sent = [...chunksPerConnection.values()].filter((n) => n > 0);
      const total = Math.ceil(weights.length / (1024 * 1024 - 64 * 1024));
      assert.equal(sent.length, 2, `chunks went over two connections: ${sent.join(', ')}`);
      assert.ok(sent[1]! <= total - 3, `${sent[1]} of ${total} chunks sent after the drop`);
      t.diagnostic(`download: ${sent[0]} chunk messages before the drop, ${sent[1]} after, of ${total}`);
      await agent.stop();
    });

    it('cancelling a running job tells the site to stop it', async () => {
      const site = await fed.enroll('cancel-site');
      const agent = await fed.startAgent(site, { upload: { chunkSize: 64 * 1024, bytesPerSecond: 1 * MB } });
      await agent.waitReady();
      const abandoned = new Promise<string>((resolve) =>
        agent.events.once('job:abandoned', (e) => resolve(e.reason)),
      );
      const job = await fed.jobs().enqueue(site.siteId, 'echo-upload', { bytes: 8 * MB, seed: 'slow' });
      await waitState(fed, job.id, 'uploading');
      const cancelled = await fed.jobs().cancel(job.id, 'the round was abandoned');
      assert.equal(cancelled.state, 'failed');
      assert.equal(cancelled.error?.code, 'cancelled');
      assert.equal(await abandoned, 'cancelled');
      await waitFor(() => agent.activeJobIds().length === 0, 'the agent to drop the job');
      assert.deepEqual(await agent.store.list(), []);
      await agent.stop();
    });

    it('survives a coordinator restart mid-upload: the site re-reports its job and completes it once', async (t) => {
      const site = await fed.enroll('restart-site');
      const chunkSize = 64 * 1024;
      const bytes = 4 * MB;
      const agent = await fed.startAgent(site, { upload: { chunkSize, bytesPerSecond: 4 * MB } });
      await agent.waitReady();
      const resumes: unknown[] = [];
      agent.events.on('ready', (hello) => resumes.push(...(hello.jobs ?? [])));
      const half = new Promise<void>((resolve) =>
        agent.events.on('upload:progress', ({ progress }) => {
          if (progress.bytesDone >= bytes / 4) resolve();
        }),
      );
      const uploaded = new Promise<SendResultEvent>((resolve) => agent.events.once('upload:done', resolve));
      const job = await fed.jobs().enqueue(site.siteId, 'echo-upload', { bytes, seed: 'restart' });
      await half;
      await fed.restart();
      const doneEvents: string[] = [];
      fed.jobEvents().on('done', (e) => doneEvents.push(e.job.id));
      const finished = await waitState(fed, job.id, 'done', 30_000);
      const { result } = await uploaded;

      assert.deepEqual(resumes, [
        {
          jobId: job.id,
          attempt: 1,
          action: 'resume',
          leaseExpiresAt: (resumes[0] as { leaseExpiresAt: number }).leaseExpiresAt,
        },
      ]);
      assert.equal(finished.attempt, 1, 'resumed, not restarted');
      assert.ok(
        result.resumedFromBytes >= bytes / 4,
        `the upload resumed at ${result.resumedFromBytes} bytes`,
      );
      assert.ok(result.chunksSent < (bytes / chunkSize) * 1.2, `${result.chunksSent} chunk messages in all`);
      assert.equal(finished.result?.outputs[0]?.sha256, echoSha256('restart', bytes));
      assert.equal(await fed.db().getRepository(BlobRecord).countBy({ jobId: job.id }), 1, 'stored once');
      assert.deepEqual(doneEvents, [job.id]);
      t.diagnostic(
        `restart: ${result.chunksSent} chunk messages in ${result.attempts} attempts for ${bytes / chunkSize} chunks, ` +
          `resumed from ${result.resumedFromBytes} bytes`,
      );
      await agent.stop();
    });
  });
}
