// The job state machine against a real database (SQLite file; PostgreSQL schema when configured), driven through
// JobsService as the gateway drives it, with the manual clock: transitions, fencing by attempt, idempotent results
// and failures, output provenance, offers, the lease sweeper, reconciliation, retries, cancellation, revocation.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { BlobsService } from '../blobs/blobs.service.js';
import { SitesService } from '../sites/sites.service.js';
import { startTestCoordinator, type TestCoordinator } from '../testing/test-coordinator.js';
import { testDialects } from '../testing/test-database.js';
import { newSiteKey, signEnrollmentProof } from '../testing/enrollment-proof.js';
import { JobEvents, type JobEventMap } from './job-events.js';
import { Job } from './job.entity.js';
import { JobsService } from './jobs.service.js';

const SHA = (c: string) => c.repeat(64);

for (const dialect of testDialects()) {
  describe(`job state machine (${dialect})`, () => {
    let c: TestCoordinator;
    let jobs: JobsService;
    let siteId: string;
    let otherSiteId: string;
    const events: Array<[keyof JobEventMap, string]> = [];

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

    before(async () => {
      c = await startTestCoordinator(dialect);
      jobs = c.app.get(JobsService);
      siteId = await activeSite('site-a');
      otherSiteId = await activeSite('site-b');
      const ev = c.app.get(JobEvents);
      for (const name of [
        'queued',
        'assigned',
        'progress',
        'uploading',
        'requeued',
        'done',
        'failed',
      ] as const) {
        ev.on(name, (e: JobEventMap[typeof name]) => events.push([name, e.job.id]));
      }
    });
    after(() => c?.dispose());

    const eventsOf = (id: string) => events.filter(([, j]) => j === id).map(([e]) => e);

    it('enqueue validates kind, payload, inputs and the site', async () => {
      await assert.rejects(jobs.enqueue(siteId, 'mine-bitcoin' as never, {}), /unknown job kind/);
      await assert.rejects(jobs.enqueue(siteId, 'sample', { f: undefined as never, g: 1n as never }));
      await assert.rejects(
        jobs.enqueue(
          siteId,
          'sample',
          {},
          { inputs: [{ role: 'w', sha256: 'nope', size: 1, kind: 'global-weights' }] },
        ),
        /bad job input/,
      );
      await assert.rejects(
        jobs.enqueue(
          siteId,
          'sample',
          {},
          { inputs: [{ role: 'w', sha256: SHA('a'), size: 1, kind: 'samples' }] },
        ),
        /bad job input/,
      );
      await assert.rejects(jobs.enqueue(crypto.randomUUID(), 'sample', {}), /no site/);
      const job = await jobs.enqueue(siteId, 'sample', { n: 4 }, { studyId: 'study-1', roundId: 'r-1' });
      assert.equal(job.state, 'queued');
      assert.equal(job.attempt, 1);
      assert.equal(job.maxAttempts, 3);
      assert.deepEqual(eventsOf(job.id), ['queued']);
      assert.deepEqual(
        (await jobs.list({ studyId: 'study-1' })).map((j) => j.id),
        [job.id],
      );
      await jobs.cancel(job.id);
    });

    it('walks queued → offered → assigned → running → uploading → done, persisting each step', async () => {
      const job = await jobs.enqueue(siteId, 'train-round', { round: 1 });
      const [claimed] = await jobs.claimOffers(siteId, ['train-round']);
      assert.equal(claimed!.id, job.id);
      assert.equal(claimed!.leaseExpiresAt!.getTime(), c.clock.now().getTime() + jobs.options.offerTtlMs);
      assert.deepEqual(
        await jobs.claimOffers(siteId, ['train-round']),
        [],
        'an offered job is not offered twice',
      );
      const offer = jobs.toOffer(claimed!);
      assert.equal(offer.kind, 'train-round');
      assert.deepEqual(offer.payload, { round: 1 });

      const lease = await jobs.accept(siteId, job.id, 1);
      assert.equal(lease.leaseExpiresAt, c.clock.now().getTime() + jobs.options.leaseTtlMs);
      assert.equal((await jobs.get(job.id)).state, 'assigned');
      assert.deepEqual(await jobs.accept(siteId, job.id, 1), lease, 'accepting again renews (idempotent)');

      c.clock.advance(1000);
      const renewed = await jobs.progress(siteId, {
        jobId: job.id,
        attempt: 1,
        fraction: 0.5,
        stage: 'train',
        metrics: { loss: 0.3 },
      });
      assert.equal(renewed.leaseExpiresAt, lease.leaseExpiresAt + 1000);
      const running = await jobs.get(job.id);
      assert.equal(running.state, 'running');
      assert.deepEqual(running.progress, {
        fraction: 0.5,
        stage: 'train',
        metrics: { loss: 0.3 },
        at: c.clock.now().toISOString(),
      });
      await jobs.markUploading(siteId, job.id, 1);
      await jobs.progress(siteId, { jobId: job.id, attempt: 1, fraction: 0.9 });
      assert.equal((await jobs.get(job.id)).state, 'uploading', 'progress does not move back from uploading');

      // outputs must be this site's uploads for this job
      const output = { role: 'update', sha256: SHA('b'), size: 10 };
      await assert.rejects(jobs.complete(siteId, { jobId: job.id, attempt: 1, outputs: [output] }), {
        code: 'unknown_transfer',
      });
      await c.app.get(BlobsService).recordUpload({
        siteId: otherSiteId,
        transferId: 'transfer-other',
        kind: 'round-update',
        blob: { sha256: output.sha256, size: 10 },
        jobId: null,
        role: 'update',
        meta: {},
      });
      await assert.rejects(jobs.complete(siteId, { jobId: job.id, attempt: 1, outputs: [output] }), {
        code: 'unknown_transfer',
      });
      await c.app.get(BlobsService).recordUpload({
        siteId,
        transferId: 'transfer-1',
        kind: 'round-update',
        blob: { sha256: output.sha256, size: 10 },
        jobId: job.id,
        role: 'update',
        meta: { jobId: job.id, attempt: 1 },
      });
      c.clock.advance(4000);
      const done = await jobs.complete(siteId, {
        jobId: job.id,
        attempt: 1,
        outputs: [output],
        metrics: { dice: 0.8 },
      });
      assert.equal(done.state, 'done');
      assert.equal(done.leaseExpiresAt, null);
      assert.equal(done.finishedAt!.getTime() - done.startedAt!.getTime(), 5000);
      assert.deepEqual(done.result, { outputs: [output], metrics: { dice: 0.8 } });
      assert.equal(
        (await jobs.complete(siteId, { jobId: job.id, attempt: 1, outputs: [output] })).state,
        'done',
        'a re-sent result is fine',
      );
      await assert.rejects(jobs.progress(siteId, { jobId: job.id, attempt: 1, fraction: 1 }), {
        code: 'lease_lost',
      });
      assert.deepEqual(eventsOf(job.id), ['queued', 'assigned', 'progress', 'uploading', 'progress', 'done']);
      const row = await c.app.get(DataSource).getRepository(Job).findOneByOrFail({ id: job.id });
      assert.equal(row.state, 'done', 'persisted');
    });

    it('fences by attempt and hides other sites\u2019 jobs', async () => {
      const job = await jobs.enqueue(siteId, 'sample', {});
      await assert.rejects(jobs.accept(otherSiteId, job.id, 1), { code: 'unknown_job' });
      await assert.rejects(jobs.accept(siteId, job.id, 2), { code: 'lease_lost' });
      await assert.rejects(jobs.accept(siteId, crypto.randomUUID(), 1), { code: 'unknown_job' });
      await jobs.accept(siteId, job.id, 1);
      await assert.rejects(
        jobs.fail(otherSiteId, { jobId: job.id, attempt: 1, code: 'x', message: 'x', retryable: true }),
        {
          code: 'unknown_job',
        },
      );
      await jobs.cancel(job.id);
    });

    it('requeues a retryable failure with attempt + 1 until maxAttempts; failures are idempotent', async () => {
      const job = await jobs.enqueue(siteId, 'train-generator', {}, { maxAttempts: 2 });
      await jobs.accept(siteId, job.id, 1);
      const failure = { jobId: job.id, attempt: 1, code: 'oom', message: 'out of memory', retryable: true };
      const requeued = await jobs.fail(siteId, failure);
      assert.equal(requeued.state, 'queued');
      assert.equal(requeued.attempt, 2);
      assert.equal(requeued.error?.code, 'oom');
      assert.equal((await jobs.fail(siteId, failure)).attempt, 2, 'the same failure again changes nothing');
      await assert.rejects(jobs.accept(siteId, job.id, 1), { code: 'lease_lost' });
      await jobs.accept(siteId, job.id, 2);
      const final = await jobs.fail(siteId, { ...failure, attempt: 2 });
      assert.equal(final.state, 'failed');
      assert.equal(final.attempt, 2);
      assert.deepEqual(eventsOf(job.id), ['queued', 'assigned', 'requeued', 'queued', 'assigned', 'failed']);

      const fatal = await jobs.enqueue(siteId, 'train-generator', {});
      await jobs.accept(siteId, fatal.id, 1);
      const failed = await jobs.fail(siteId, {
        jobId: fatal.id,
        attempt: 1,
        code: 'bad',
        message: 'no',
        retryable: false,
      });
      assert.equal(failed.state, 'failed');
      assert.equal(failed.attempt, 1);
    });

    it('the sweeper withdraws unanswered offers and requeues or fails expired leases', async () => {
      const offered = await jobs.enqueue(siteId, 'evaluate', {});
      const leased = await jobs.enqueue(siteId, 'audit', {}, { maxAttempts: 2 });
      await jobs.claimOffers(siteId, ['evaluate', 'audit']);
      await jobs.accept(siteId, leased.id, 1);
      assert.deepEqual(
        await jobs.sweep(),
        { offersExpired: [], requeued: [], failed: [] },
        'nothing is due yet',
      );

      // (the background sweeper may get there first: assert on the outcome, not on who swept)
      c.clock.advance(jobs.options.offerTtlMs);
      await jobs.sweep();
      assert.equal((await jobs.get(offered.id)).leaseExpiresAt, null);
      assert.equal((await jobs.get(offered.id)).attempt, 1, 'an unanswered offer costs no attempt');

      c.clock.advance(jobs.options.leaseTtlMs);
      await jobs.sweep();
      const requeued = await jobs.get(leased.id);
      assert.equal(requeued.state, 'queued');
      assert.equal(requeued.attempt, 2);
      assert.equal(requeued.error?.code, 'lease_expired');
      await jobs.accept(siteId, leased.id, 2);
      // a heartbeat renews the lease: not due after one more TTL minus a little
      c.clock.advance(jobs.options.leaseTtlMs - 1000);
      assert.deepEqual(
        await jobs.renewLeases(siteId, [
          { jobId: leased.id, attempt: 2 },
          { jobId: offered.id, attempt: 1 },
        ]),
        [offered.id],
      );
      c.clock.advance(2000);
      await jobs.sweep();
      assert.equal((await jobs.get(leased.id)).state, 'assigned', 'renewed');
      c.clock.advance(jobs.options.leaseTtlMs);
      await jobs.sweep();
      assert.equal((await jobs.get(leased.id)).state, 'failed');
      assert.deepEqual(eventsOf(leased.id), [
        'queued',
        'assigned',
        'requeued',
        'queued',
        'assigned',
        'failed',
      ]);
      assert.deepEqual(eventsOf(offered.id), ['queued', 'queued']);
      await jobs.cancel(offered.id);
    });

    it('reconciles the jobs a reconnecting site reports: resume, done or abandon', async () => {
      const running = await jobs.enqueue(siteId, 'sample', {});
      await jobs.accept(siteId, running.id, 1);
      const finished = await jobs.enqueue(siteId, 'sample', {});
      await jobs.accept(siteId, finished.id, 1);
      await jobs.complete(siteId, { jobId: finished.id, attempt: 1, outputs: [] });
      const stale = await jobs.enqueue(siteId, 'sample', {});
      await jobs.accept(siteId, stale.id, 1);
      await jobs.fail(siteId, { jobId: stale.id, attempt: 1, code: 'x', message: 'x', retryable: true });
      c.clock.advance(60_000);
      const actions = await jobs.reconcile(
        siteId,
        [
          { jobId: running.id, attempt: 1, state: 'uploading' },
          { jobId: finished.id, attempt: 1, state: 'done' },
          { jobId: stale.id, attempt: 1, state: 'running' },
          { jobId: crypto.randomUUID(), attempt: 1, state: 'running' },
        ],
        ['sample'],
      );
      assert.deepEqual(
        actions.map((a) => a.action),
        ['resume', 'done', 'abandon', 'abandon'],
      );
      assert.equal(
        actions[0]!.leaseExpiresAt,
        c.clock.now().getTime() + jobs.options.leaseTtlMs,
        'lease renewed',
      );
      for (const id of [running.id, stale.id]) await jobs.cancel(id);
    });

    it('a job the site took whose acceptance was never recorded resumes on hello instead of waiting for the offer to expire', async () => {
      const job = await jobs.enqueue(siteId, 'sample', {});
      const offered = await jobs.claimOffers(siteId, ['sample']);
      assert.ok(offered.some((j) => j.id === job.id));
      // the coordinator stopped before job:accept was saved; the site reconnects: hello withdraws the old offers,
      // then reconciles what the site reports holding
      await jobs.withdrawOffers(siteId);
      const [action] = await jobs.reconcile(
        siteId,
        [{ jobId: job.id, attempt: 1, state: 'assigned' }],
        ['sample'],
      );
      assert.equal(action!.action, 'resume');
      assert.equal(action!.leaseExpiresAt, c.clock.now().getTime() + jobs.options.leaseTtlMs);
      const row = await c.app.get(DataSource).getRepository(Job).findOneByOrFail({ id: job.id });
      assert.equal(row.state, 'assigned');
      assert.equal(row.attempt, 1, 'no attempt spent');
      assert.ok(
        !(await jobs.claimOffers(siteId, ['sample'])).some((j) => j.id === job.id),
        'not offered again',
      );
      // the site's retried job:accept and its result are those of the same attempt
      await jobs.accept(siteId, job.id, 1);
      await jobs.complete(siteId, { jobId: job.id, attempt: 1, outputs: [] });
      // another site cannot take it over this way
      const other = await jobs.enqueue(siteId, 'sample', {});
      const [foreign] = await jobs.reconcile(
        otherSiteId,
        [{ jobId: other.id, attempt: 1, state: 'assigned' }],
        ['sample'],
      );
      assert.equal(foreign!.action, 'abandon');
      await jobs.cancel(other.id);
    });

    it('a still-queued job is accepted on hello only when the agent now runs its kind', async () => {
      const job = await jobs.enqueue(siteId, 'sample', {});
      assert.ok((await jobs.claimOffers(siteId, ['sample'])).some((j) => j.id === job.id));
      await jobs.withdrawOffers(siteId);
      // the agent came back without a sample handler: no acceptance, the job stays queued for another offer
      const [refused] = await jobs.reconcile(
        siteId,
        [{ jobId: job.id, attempt: 1, state: 'assigned' }],
        ['train-round', 'audit'],
      );
      assert.equal(refused!.action, 'abandon');
      const row = await c.app.get(DataSource).getRepository(Job).findOneByOrFail({ id: job.id });
      assert.equal(row.state, 'queued');
      assert.equal(row.attempt, 1, 'no attempt spent');
      assert.ok(!eventsOf(job.id).includes('assigned'));
      // once an agent with the kind reports it, the report is the acceptance
      const [accepted] = await jobs.reconcile(
        siteId,
        [{ jobId: job.id, attempt: 1, state: 'assigned' }],
        ['audit', 'sample'],
      );
      assert.equal(accepted!.action, 'resume');
      assert.equal((await jobs.get(job.id)).state, 'assigned');
      // kinds only gate the queued branch: an active attempt resumes whatever the hello lists
      const [active] = await jobs.reconcile(siteId, [{ jobId: job.id, attempt: 1, state: 'running' }], []);
      assert.equal(active!.action, 'resume');
      await jobs.cancel(job.id);
    });

    it('only one of two concurrent claimers offers a job; concurrent accepts agree', async () => {
      const job = await jobs.enqueue(otherSiteId, 'sample', {});
      const [a, b] = await Promise.all([
        jobs.claimOffers(otherSiteId, ['sample']),
        jobs.claimOffers(otherSiteId, ['sample']),
      ]);
      assert.equal(a.length + b.length, 1);
      const leases = await Promise.all([
        jobs.accept(otherSiteId, job.id, 1),
        jobs.accept(otherSiteId, job.id, 1),
      ]);
      assert.equal(leases[0].attempt, 1);
      assert.equal(eventsOf(job.id).filter((e) => e === 'assigned').length, 1);
      await jobs.cancel(job.id);
    });

    it('cancel and revocation end unfinished jobs; finished ones stay', async () => {
      const queued = await jobs.enqueue(otherSiteId, 'sample', {});
      const active = await jobs.enqueue(otherSiteId, 'sample', {});
      await jobs.accept(otherSiteId, active.id, 1);
      const failedEvents: Array<JobEventMap['failed']> = [];
      const off = c.app.get(JobEvents).on('failed', (e) => failedEvents.push(e));
      const cancelled = await jobs.cancel(queued.id, 'no longer needed');
      assert.equal(cancelled.error?.code, 'cancelled');
      assert.equal((await jobs.cancel(queued.id)).state, 'failed', 'cancelling twice is harmless');
      await c.app.get(SitesService).revoke(otherSiteId);
      await new Promise((resolve) => setTimeout(resolve, 100)); // the revocation listener runs asynchronously
      const revoked = await jobs.get(active.id);
      assert.equal(revoked.state, 'failed');
      assert.equal(revoked.error?.code, 'site_revoked');
      assert.deepEqual(
        failedEvents.map((e) => [e.job.id, e.previousState, e.bySite]),
        [
          [queued.id, 'queued', false],
          [active.id, 'assigned', false],
        ],
      );
      off();
      await assert.rejects(jobs.enqueue(otherSiteId, 'sample', {}), /revoked/);
    });
  });
}
