import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { serverToSiteReplySchemas } from '@fedsynth/common/protocol/index';
import { JobEvents } from '../jobs/job-events.js';
import type { Job } from '../jobs/job.entity.js';
import { isActiveJobState } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { FEDERATION_OPTIONS, type FederationOptions } from './federation.options.js';
import { type SiteConnection, SiteConnections } from './site-connections.js';

/**
 * Offers waiting jobs to their connected sites: after the site's hello, when a job is queued, after a job of the
 * site ends, and at every heartbeat. One offering pass per site at a time (a request during a pass runs another
 * pass after it). Tells the site to stop a job that was cancelled while it worked on it.
 */
@Injectable()
export class JobDispatcher implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(JobDispatcher.name);
  private readonly passes = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly unsubscribe: Array<() => void> = [];

  constructor(
    private readonly jobs: JobsService,
    private readonly events: JobEvents,
    private readonly connections: SiteConnections,
    @Inject(FEDERATION_OPTIONS) private readonly options: FederationOptions,
  ) {}

  onModuleInit(): void {
    this.unsubscribe.push(
      this.events.on('queued', ({ job }) => void this.offerPending(job.siteId)),
      this.events.on('failed', ({ job, previousState, bySite }) => {
        if (!bySite && isActiveJobState(previousState)) void this.cancelAtSite(job, previousState);
      }),
    );
  }

  onModuleDestroy(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** Offers the site's waiting jobs if it is connected; resolves when this (and any requested) pass is over. */
  offerPending(siteId: string): Promise<void> {
    const running = this.passes.get(siteId);
    if (running) {
      this.again.add(siteId);
      return running;
    }
    const pass = (async () => {
      do {
        this.again.delete(siteId);
        await this.offerOnce(siteId);
      } while (this.again.has(siteId));
    })()
      .catch((error: unknown) => this.logger.error(`offering jobs to site ${siteId}: ${String(error)}`))
      .finally(() => this.passes.delete(siteId));
    this.passes.set(siteId, pass);
    return pass;
  }

  private async offerOnce(siteId: string): Promise<void> {
    const conn = this.connections.readyForSite(siteId);
    if (!conn) return;
    const claimed = await this.jobs.claimOffers(siteId, conn.jobKinds, this.options.maxOffersPerSite);
    // acks are awaited outside the pass: a site that never answers must not hold up the next pass
    for (const job of claimed) {
      this.offer(conn, job).catch((error: unknown) =>
        this.logger.error(`offering job ${job.id} to site ${siteId}: ${String(error)}`),
      );
    }
  }

  private async offer(conn: SiteConnection, job: Job): Promise<void> {
    let raw: unknown;
    try {
      raw = await conn.emitter.emitWithAck(
        'job:offer',
        { job: this.jobs.toOffer(job) },
        this.options.offerAckTimeoutMs,
      );
    } catch (error) {
      // no answer: the offer stays out until its deadline (the sweeper, or the site's next hello, withdraws it)
      this.logger.warn(`job ${job.id} offer to site ${conn.siteId} got no ack: ${(error as Error).message}`);
      return;
    }
    const reply = serverToSiteReplySchemas['job:offer'].safeParse(raw);
    if (!reply.success) {
      this.logger.warn(`site ${conn.siteId} answered the offer of job ${job.id} with something else`);
      return;
    }
    if (!reply.data.ok) {
      const { code, message, retryable } = reply.data;
      if (!retryable)
        this.logger.warn(`site ${conn.siteId} declined job ${job.id} (${job.kind}): ${code}: ${message}`);
      await this.jobs.offerDeclined(job.id, job.attempt, { code, message, retryable });
    }
  }

  private async cancelAtSite(job: Job, previousState: string): Promise<void> {
    const conn = this.connections.readyForSite(job.siteId);
    if (!conn) return;
    try {
      await conn.emitter.emitWithAck(
        'job:cancel',
        { jobId: job.id, attempt: job.attempt, reason: (job.error?.message ?? 'cancelled').slice(0, 500) },
        this.options.offerAckTimeoutMs,
      );
    } catch (error) {
      this.logger.warn(
        `telling site ${job.siteId} to stop job ${job.id} (was ${previousState}): ${(error as Error).message}`,
      );
    }
  }
}
