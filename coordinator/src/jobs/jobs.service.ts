import {
  BadRequestException,
  ConflictException,
  Inject,
  Injectable,
  Logger,
  NotFoundException,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import {
  type InFlightJob,
  type Job as OfferedJob,
  type JobFailed,
  type JobKind,
  type JobProgress,
  type JobResult,
  type JobResume,
  type LeaseGranted,
  ProtocolError,
  jobInputSchema,
  jobKindSchema,
  jobSchema,
  transferKindSchema,
} from '@fedsynth/common/protocol/index';
import { In, IsNull, LessThanOrEqual, Not, type FindOptionsWhere, type Repository } from 'typeorm';
import { BlobsService } from '../blobs/blobs.service.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { SiteEvents } from '../sites/site-events.js';
import { SitesService } from '../sites/sites.service.js';
import { IntervalScheduler } from './interval-scheduler.js';
import { JobEvents } from './job-events.js';
import {
  ACTIVE_JOB_STATES,
  type JobErrorRecord,
  type JobInputRecord,
  type JobState,
  type JsonValue,
  Job,
  isActiveJobState,
} from './job.entity.js';
import { JOBS_OPTIONS, type JobsOptions } from './jobs.options.js';

/** Transfer kinds the coordinator sends down to sites: what a job input may be. */
export const DOWNLOAD_KINDS = ['global-weights', 'segmenter', 'audit-pool', 'synthetic-pool'] as const;

export interface EnqueueOptions {
  /** blobs from the coordinator's store the site may fetch for this job */
  inputs?: JobInputRecord[];
  /** attempts before the job fails for good (default JobsOptions.defaultMaxAttempts) */
  maxAttempts?: number;
  studyId?: string;
  roundId?: string;
}

export interface JobFilter {
  siteId?: string;
  state?: JobState | JobState[];
  kind?: JobKind;
  studyId?: string;
  roundId?: string;
}

export interface SweepResult {
  /** offers that expired unanswered (back to waiting) */
  offersExpired: string[];
  /** active jobs whose lease expired and that were queued again */
  requeued: string[];
  /** active jobs whose lease expired on their last attempt */
  failed: string[];
}

const MAX_CONTENTION_RETRIES = 8;

/**
 * The job state machine, persisted (every transition is one conditional UPDATE on (id, attempt, state), so
 * concurrent messages, two coordinator instances or a sweeper racing a site cannot both win):
 *
 *   queued ──offer──▶ queued+offer lease ──job:accept──▶ assigned ──job:progress──▶ running
 *     ▲   ◀─offer expired / declined (busy)─┘                 │                        │
 *     │                                                       └──transfer:begin──▶ uploading ◀─┘
 *     │                                          assigned | running | uploading ──job:result──▶ done
 *     └──(attempt+1) job:failed retryable, lease expired, while attempt < maxAttempts
 *                     job:failed, lease expired on the last attempt, declined, cancel, site revoked ──▶ failed
 *
 * `attempt` is the fencing token: messages naming another attempt get 'lease_lost'. Results and failures are
 * idempotent for the attempt that produced them (a site re-sends them after a reconnect).
 */
@Injectable()
export class JobsService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(JobsService.name);
  private unsubscribe?: () => void;

  constructor(
    @InjectRepository(Job) private readonly jobs: Repository<Job>,
    private readonly blobs: BlobsService,
    private readonly sites: SitesService,
    private readonly siteEvents: SiteEvents,
    readonly events: JobEvents,
    private readonly clock: Clock,
    private readonly random: RandomSource,
    private readonly metrics: MetricsService,
    private readonly scheduler: IntervalScheduler,
    @Inject(JOBS_OPTIONS) readonly options: JobsOptions,
  ) {}

  private stopSweeper?: () => void;

  onModuleInit(): void {
    this.unsubscribe = this.siteEvents.on('revoked', (e) => {
      this.failAllForSite(e.siteId, 'site_revoked', `site ${e.name} was revoked`).catch((error: unknown) =>
        this.logger.error(`failing the jobs of revoked site ${e.siteId}: ${String(error)}`),
      );
    });
    if (this.options.sweepIntervalMs > 0) {
      this.stopSweeper = this.scheduler.every(this.options.sweepIntervalMs, async () => {
        try {
          await this.sweep();
        } catch (error) {
          this.logger.error(`lease sweep failed: ${(error as Error).message}`);
        }
      });
    }
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
    this.stopSweeper?.();
  }

  // ------------------------------------------------------------------------------------------ for orchestrators

  /** Queues a job for a site (offered at once when the site is connected and can run `kind`). */
  async enqueue(
    siteId: string,
    kind: JobKind,
    payload: Record<string, JsonValue>,
    options: EnqueueOptions = {},
  ): Promise<Job> {
    const parsedKind = jobKindSchema.safeParse(kind);
    if (!parsedKind.success) throw new BadRequestException(`unknown job kind ${String(kind)}`);
    if (!jobSchema.shape.payload.safeParse(payload).success) {
      throw new BadRequestException('job payload must be a JSON object of at most 128 keys');
    }
    const inputs = (options.inputs ?? []).map((input) => {
      const ok =
        jobInputSchema.safeParse({ role: input.role, sha256: input.sha256, size: input.size }).success &&
        transferKindSchema.safeParse(input.kind).success &&
        (DOWNLOAD_KINDS as readonly string[]).includes(input.kind);
      if (!ok) throw new BadRequestException(`bad job input ${JSON.stringify(input).slice(0, 200)}`);
      return { role: input.role, sha256: input.sha256, size: input.size, kind: input.kind };
    });
    const maxAttempts = options.maxAttempts ?? this.options.defaultMaxAttempts;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new BadRequestException('maxAttempts ≥ 1');
    const site = await this.sites.get(siteId);
    if (site.status === 'revoked') throw new ConflictException(`site ${site.name} is revoked`);
    const now = this.clock.now();
    const job = this.jobs.create({
      id: this.random.uuid(),
      siteId,
      kind: parsedKind.data,
      payload,
      inputs,
      state: 'queued',
      attempt: 1,
      maxAttempts,
      leaseExpiresAt: null,
      progress: null,
      result: null,
      error: null,
      studyId: options.studyId ?? null,
      roundId: options.roundId ?? null,
      createdAt: now,
      updatedAt: now,
      startedAt: null,
      finishedAt: null,
    });
    await this.jobs.insert(job as never); // (JSON columns defeat QueryDeepPartialEntity)
    this.events.emit('queued', { job, reason: 'enqueued' });
    return job;
  }

  async get(id: string): Promise<Job> {
    const job = await this.jobs.findOneBy({ id });
    if (!job) throw new NotFoundException(`no job ${id}`);
    return job;
  }

  list(filter: JobFilter = {}): Promise<Job[]> {
    const where: FindOptionsWhere<Job> = {};
    if (filter.siteId) where.siteId = filter.siteId;
    if (filter.kind) where.kind = filter.kind;
    if (filter.studyId) where.studyId = filter.studyId;
    if (filter.roundId) where.roundId = filter.roundId;
    if (filter.state) where.state = Array.isArray(filter.state) ? In(filter.state) : filter.state;
    return this.jobs.find({ where, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  /** Ends a job that is not finished yet as failed ('cancelled'); the site working on it is told to stop. */
  async cancel(id: string, reason = 'cancelled'): Promise<Job> {
    for (let i = 0; i < MAX_CONTENTION_RETRIES; i++) {
      const job = await this.get(id);
      if (job.state === 'done' || job.state === 'failed') return job;
      const updated = await this.toFailed(job, {
        code: 'cancelled',
        message: reason.slice(0, 2000),
        retryable: false,
      });
      if (updated) return updated;
    }
    throw new ConflictException(`job ${id} keeps changing; try again`);
  }

  // ------------------------------------------------------------------------------------------ offers

  /** The offer message for a job. */
  toOffer(job: Job): OfferedJob {
    return {
      id: job.id,
      kind: job.kind,
      attempt: job.attempt,
      leaseExpiresAt: (job.leaseExpiresAt ?? this.clock.now()).getTime(),
      ...(job.studyId ? { studyId: job.studyId } : {}),
      ...(job.roundId ? { roundId: job.roundId } : {}),
      payload: job.payload as OfferedJob['payload'],
      ...(job.inputs.length
        ? { inputs: job.inputs.map(({ role, sha256, size }) => ({ role, sha256, size })) }
        : {}),
    };
  }

  /**
   * Claims up to `limit` waiting jobs of the site (oldest first, of the kinds it runs) for an offer: each gets an
   * offer deadline. Only the caller that claimed a job offers it.
   */
  async claimOffers(siteId: string, kinds: readonly string[], limit = 16): Promise<Job[]> {
    if (kinds.length === 0) return [];
    const candidates = await this.jobs.find({
      where: { siteId, state: 'queued', leaseExpiresAt: IsNull(), kind: In([...kinds]) as never },
      order: { createdAt: 'ASC', id: 'ASC' },
      take: limit,
    });
    const claimed: Job[] = [];
    for (const job of candidates) {
      const now = this.clock.now();
      const until = new Date(now.getTime() + this.options.offerTtlMs);
      const r = await this.jobs.update(
        { id: job.id, state: 'queued', attempt: job.attempt, leaseExpiresAt: IsNull() },
        { leaseExpiresAt: until, updatedAt: now },
      );
      if (r.affected === 1) claimed.push(Object.assign(job, { leaseExpiresAt: until, updatedAt: now }));
    }
    return claimed;
  }

  /**
   * The site declined an offer: a retryable refusal (busy) returns the job to waiting, to be offered at the next
   * occasion; anything else fails it.
   */
  async offerDeclined(
    jobId: string,
    attempt: number,
    refusal: { code: string; message: string; retryable?: boolean },
  ): Promise<void> {
    const job = await this.jobs.findOneBy({ id: jobId });
    if (!job || job.state !== 'queued' || job.attempt !== attempt) return;
    if (refusal.retryable) {
      await this.jobs.update(
        { id: jobId, state: 'queued', attempt, leaseExpiresAt: Not(IsNull()) },
        { leaseExpiresAt: null, updatedAt: this.clock.now() },
      );
      return;
    }
    await this.toFailed(job, {
      code: `declined:${refusal.code}`.slice(0, 64),
      message: refusal.message,
      retryable: false,
    });
  }

  /** Voids the outstanding offers of a site (its previous connection is gone); returns how many. */
  async withdrawOffers(siteId: string): Promise<number> {
    const r = await this.jobs.update(
      { siteId, state: 'queued', leaseExpiresAt: Not(IsNull()) },
      { leaseExpiresAt: null, updatedAt: this.clock.now() },
    );
    return r.affected ?? 0;
  }

  // ------------------------------------------------------------------------------------------ site messages

  /** `job:accept`: the offered (or waiting) attempt starts under a lease; accepting again renews it. */
  async accept(siteId: string, jobId: string, attempt: number): Promise<LeaseGranted> {
    return this.transition(siteId, jobId, attempt, (job, now) => {
      if (job.state === 'queued') {
        return {
          patch: { state: 'assigned', leaseExpiresAt: this.leaseFrom(now), startedAt: now, progress: null },
          event: 'assigned',
        };
      }
      if (isActiveJobState(job.state)) return { patch: { leaseExpiresAt: this.leaseFrom(now) } };
      throw this.leaseLost(job, attempt);
    }).then((job) => this.lease(job));
  }

  /** `job:progress`: renews the lease; assigned → running. */
  async progress(siteId: string, msg: JobProgress): Promise<LeaseGranted> {
    return this.transition(siteId, msg.jobId, msg.attempt, (job, now) => {
      if (!isActiveJobState(job.state)) throw this.leaseLost(job, msg.attempt);
      return {
        patch: {
          state: job.state === 'assigned' ? 'running' : job.state,
          leaseExpiresAt: this.leaseFrom(now),
          progress: {
            fraction: msg.fraction,
            ...(msg.stage !== undefined ? { stage: msg.stage } : {}),
            ...(msg.message !== undefined ? { message: msg.message } : {}),
            ...(msg.metrics !== undefined ? { metrics: msg.metrics } : {}),
            at: now.toISOString(),
          },
        },
        event: 'progress',
      };
    }).then((job) => this.lease(job));
  }

  /** An upload for the job began (`transfer:begin` naming it): → uploading, lease renewed. */
  async markUploading(siteId: string, jobId: string, attempt: number): Promise<LeaseGranted> {
    return this.transition(siteId, jobId, attempt, (job, now) => {
      if (!isActiveJobState(job.state)) throw this.leaseLost(job, attempt);
      return {
        patch: { state: 'uploading', leaseExpiresAt: this.leaseFrom(now) },
        event: job.state === 'uploading' ? undefined : 'uploading',
      };
    }).then((job) => this.lease(job));
  }

  /**
   * `job:result`: → done. Every output must be an upload of this site for this job (committed transfer, same
   * sha256 and size). Idempotent for the attempt that finished.
   */
  async complete(siteId: string, msg: JobResult): Promise<Job> {
    const current = await this.findForSite(siteId, msg.jobId);
    if (current.state === 'done' && current.attempt === msg.attempt) return current;
    for (const output of msg.outputs) {
      if (!(await this.blobs.hasUpload(siteId, msg.jobId, output.sha256, output.size))) {
        throw new ProtocolError(
          'unknown_transfer',
          `output ${output.role} (${output.sha256}, ${output.size} bytes) is not a committed upload of this ` +
            `site for job ${msg.jobId}; upload it first`,
        );
      }
    }
    const job = await this.transition(siteId, msg.jobId, msg.attempt, (j) => {
      if (j.state === 'done' && j.attempt === msg.attempt) return { patch: {} };
      if (!isActiveJobState(j.state)) throw this.leaseLost(j, msg.attempt);
      return {
        patch: {
          state: 'done',
          leaseExpiresAt: null,
          finishedAt: this.clock.now(),
          result: {
            outputs: msg.outputs.map(({ role, sha256, size }) => ({ role, sha256, size })),
            ...(msg.metrics ? { metrics: msg.metrics } : {}),
            ...(msg.summary ? { summary: msg.summary } : {}),
          },
        },
        event: 'done',
      };
    });
    if (job.startedAt && job.finishedAt) {
      this.metrics.jobDurationSeconds.observe(
        { kind: job.kind },
        (job.finishedAt.getTime() - job.startedAt.getTime()) / 1000,
      );
    }
    return job;
  }

  /** `job:failed`: back to the queue (attempt + 1) when retryable and attempts remain, else failed. */
  async fail(siteId: string, msg: JobFailed): Promise<Job> {
    for (let i = 0; i < MAX_CONTENTION_RETRIES; i++) {
      const current = await this.findForSite(siteId, msg.jobId);
      if (current.error?.attempt === msg.attempt && current.state !== 'done') {
        return current; // this attempt's end was recorded already (a re-sent failure, or its lease expired)
      }
      if (current.attempt !== msg.attempt || !isActiveJobState(current.state)) {
        throw this.leaseLost(current, msg.attempt);
      }
      const error = { code: msg.code, message: msg.message, retryable: msg.retryable };
      const updated = msg.retryable
        ? await this.endAttempt(current, error, 'failed')
        : await this.toFailed(current, error, undefined, true);
      if (updated) return updated;
    }
    throw new ProtocolError('busy', `job ${msg.jobId} is changing concurrently; try again`, true);
  }

  /** Heartbeat: renews the leases of the jobs the site works on; returns those it no longer holds. */
  async renewLeases(
    siteId: string,
    refs: ReadonlyArray<{ jobId: string; attempt: number }>,
  ): Promise<string[]> {
    const lost: string[] = [];
    const now = this.clock.now();
    for (const ref of refs) {
      const r = await this.jobs.update(
        { id: ref.jobId, siteId, attempt: ref.attempt, state: In([...ACTIVE_JOB_STATES]) },
        { leaseExpiresAt: this.leaseFrom(now), updatedAt: now },
      );
      if (r.affected !== 1) lost.push(ref.jobId);
    }
    return lost;
  }

  /**
   * `site:hello` with in-flight jobs: 'resume' (lease renewed) for an attempt the coordinator still considers
   * running, 'done' for a recorded result, 'abandon' for anything else (requeued, failed, cancelled, unknown).
   * `jobKinds` are the kinds the hello says the agent runs now: a still-queued job is accepted only if its kind is
   * among them (an agent restarted without that handler could never finish it).
   */
  async reconcile(
    siteId: string,
    inFlight: readonly InFlightJob[],
    jobKinds: readonly string[],
  ): Promise<JobResume[]> {
    const out: JobResume[] = [];
    const now = this.clock.now();
    for (const reported of inFlight) {
      const job = await this.jobs.findOneBy({ id: reported.jobId, siteId });
      const base = { jobId: reported.jobId, attempt: reported.attempt };
      if (!job || job.attempt !== reported.attempt) {
        out.push({ ...base, action: 'abandon' });
      } else if (job.state === 'done') {
        out.push({ ...base, action: 'done' });
      } else if (job.state === 'queued' && !jobKinds.includes(job.kind)) {
        // Left queued: offered again to an agent that runs this kind.
        out.push({ ...base, action: 'abandon' });
      } else if (job.state === 'queued') {
        // Offered to this site and taken, but the acceptance was never recorded (the coordinator stopped in
        // between): the report is the acceptance. Abandoning would leave the site holding a job it was then
        // offered again and ignored as a repeat, until the offer expired.
        const lease = await this.accept(siteId, job.id, job.attempt).catch(() => undefined);
        out.push(
          lease
            ? { ...base, action: 'resume', leaseExpiresAt: lease.leaseExpiresAt }
            : { ...base, action: 'abandon' },
        );
      } else if (isActiveJobState(job.state)) {
        const until = this.leaseFrom(now);
        const r = await this.jobs.update(
          { id: job.id, attempt: job.attempt, state: In([...ACTIVE_JOB_STATES]) },
          { leaseExpiresAt: until, updatedAt: now },
        );
        out.push(
          r.affected === 1
            ? { ...base, action: 'resume', leaseExpiresAt: until.getTime() }
            : { ...base, action: 'abandon' },
        );
      } else {
        out.push({ ...base, action: 'abandon' });
      }
      this.logger.log(
        `site ${siteId} reports job ${reported.jobId} attempt ${reported.attempt} ${reported.state}: ` +
          `${out[out.length - 1]!.action}`,
      );
    }
    return out;
  }

  /** `blob:fetch`: the input of an active attempt with this content address, or 'unknown_blob'. */
  async inputFor(siteId: string, jobId: string, attempt: number, sha256: string): Promise<JobInputRecord> {
    const job = await this.findForSite(siteId, jobId);
    if (job.attempt !== attempt || !isActiveJobState(job.state)) throw this.leaseLost(job, attempt);
    const input = job.inputs.find((i) => i.sha256 === sha256);
    if (!input) throw new ProtocolError('unknown_blob', `${sha256} is not an input of job ${jobId}`);
    return input;
  }

  // ------------------------------------------------------------------------------------------ leases

  /**
   * Expired offers go back to waiting; active jobs whose lease expired (the site dropped or stalled) are queued
   * again with attempt + 1, or fail on their last attempt.
   */
  async sweep(): Promise<SweepResult> {
    const now = this.clock.now();
    const result: SweepResult = { offersExpired: [], requeued: [], failed: [] };
    const offers = await this.jobs.find({ where: { state: 'queued', leaseExpiresAt: LessThanOrEqual(now) } });
    for (const job of offers) {
      const r = await this.jobs.update(
        { id: job.id, state: 'queued', attempt: job.attempt, leaseExpiresAt: LessThanOrEqual(now) },
        { leaseExpiresAt: null, updatedAt: now },
      );
      if (r.affected !== 1) continue;
      result.offersExpired.push(job.id);
      this.events.emit('queued', {
        job: Object.assign(job, { leaseExpiresAt: null, updatedAt: now }),
        reason: 'offer_expired',
      });
    }
    const expired = await this.jobs.find({
      where: { state: In([...ACTIVE_JOB_STATES]), leaseExpiresAt: LessThanOrEqual(now) },
    });
    for (const job of expired) {
      const error = {
        code: 'lease_expired',
        message: `no word from the site since the lease ran out at ${job.leaseExpiresAt?.toISOString()}`,
        retryable: true,
      };
      const updated = await this.endAttempt(job, error, 'lease_expired', LessThanOrEqual(now));
      if (!updated) continue;
      (updated.state === 'failed' ? result.failed : result.requeued).push(job.id);
      this.logger.warn(
        `job ${job.id} (${job.kind}) attempt ${job.attempt}: lease expired → ${updated.state}`,
      );
    }
    return result;
  }

  /** Fails every unfinished job of a site (it was revoked). */
  async failAllForSite(siteId: string, code: string, message: string): Promise<string[]> {
    const failed: string[] = [];
    const open = await this.jobs.find({ where: { siteId, state: In(['queued', ...ACTIVE_JOB_STATES]) } });
    for (const job of open) {
      if (await this.toFailed(job, { code, message, retryable: false })) failed.push(job.id);
    }
    return failed;
  }

  // ------------------------------------------------------------------------------------------ internals

  private leaseFrom(now: Date): Date {
    return new Date(now.getTime() + this.options.leaseTtlMs);
  }

  private lease(job: Job): LeaseGranted {
    return { jobId: job.id, attempt: job.attempt, leaseExpiresAt: job.leaseExpiresAt?.getTime() ?? 0 };
  }

  private leaseLost(job: Job, attempt: number): ProtocolError {
    return new ProtocolError(
      'lease_lost',
      `job ${job.id} attempt ${attempt} no longer holds a lease (the job is at attempt ${job.attempt}, ${job.state}); ` +
        'stop working on it',
    );
  }

  private async findForSite(siteId: string, jobId: string): Promise<Job> {
    const job = await this.jobs.findOneBy({ id: jobId, siteId });
    if (!job) throw new ProtocolError('unknown_job', `no job ${jobId} for this site`);
    return job;
  }

  /**
   * Reads the job, lets `decide` pick the change for its current state, and applies it with an UPDATE conditional
   * on (id, attempt, state); on contention reads again. Emits `event` once the change is stored.
   */
  private async transition(
    siteId: string,
    jobId: string,
    attempt: number,
    decide: (
      job: Job,
      now: Date,
    ) => { patch: Partial<Job>; event?: 'assigned' | 'progress' | 'uploading' | 'done' },
  ): Promise<Job> {
    for (let i = 0; i < MAX_CONTENTION_RETRIES; i++) {
      const job = await this.findForSite(siteId, jobId);
      if (job.attempt !== attempt) throw this.leaseLost(job, attempt);
      const now = this.clock.now();
      const { patch, event } = decide(job, now);
      if (Object.keys(patch).length === 0) return job;
      const r = await this.jobs.update({ id: job.id, attempt: job.attempt, state: job.state }, {
        ...patch,
        updatedAt: now,
      } as never);
      if (r.affected !== 1) continue;
      const updated = Object.assign(job, patch, { updatedAt: now });
      if (event) this.events.emit(event, { job: updated });
      return updated;
    }
    throw new ProtocolError('busy', `job ${jobId} is changing concurrently; try again`, true);
  }

  /** Ends the current attempt: queued again with attempt + 1 when allowed, else failed. undefined on contention. */
  private async endAttempt(
    job: Job,
    error: Omit<JobErrorRecord, 'attempt' | 'at'>,
    reason: 'failed' | 'lease_expired',
    leaseCondition?: ReturnType<typeof LessThanOrEqual<Date>>,
  ): Promise<Job | undefined> {
    if (!error.retryable || job.attempt >= job.maxAttempts) {
      return this.toFailed(job, error, leaseCondition, reason === 'failed');
    }
    const now = this.clock.now();
    const record: JobErrorRecord = { ...error, attempt: job.attempt, at: now.toISOString() };
    const patch: Partial<Job> = {
      state: 'queued',
      attempt: job.attempt + 1,
      leaseExpiresAt: null,
      startedAt: null,
      progress: null,
      error: record,
      updatedAt: now,
    };
    const r = await this.jobs.update(
      {
        id: job.id,
        attempt: job.attempt,
        state: job.state,
        ...(leaseCondition ? { leaseExpiresAt: leaseCondition } : {}),
      },
      patch as never,
    );
    if (r.affected !== 1) return undefined;
    const updated = Object.assign(job, patch);
    this.events.emit('requeued', { job: updated, reason, error: record });
    this.events.emit('queued', { job: updated, reason: 'requeued' });
    return updated;
  }

  /** → failed (terminal). undefined on contention. */
  private async toFailed(
    job: Job,
    error: Omit<JobErrorRecord, 'attempt' | 'at'>,
    leaseCondition?: ReturnType<typeof LessThanOrEqual<Date>>,
    bySite = false,
  ): Promise<Job | undefined> {
    const now = this.clock.now();
    const previousState = job.state;
    const patch: Partial<Job> = {
      state: 'failed',
      leaseExpiresAt: null,
      finishedAt: now,
      error: { ...error, attempt: job.attempt, at: now.toISOString() },
      updatedAt: now,
    };
    const r = await this.jobs.update(
      {
        id: job.id,
        attempt: job.attempt,
        state: job.state,
        ...(leaseCondition ? { leaseExpiresAt: leaseCondition } : {}),
      },
      patch as never,
    );
    if (r.affected !== 1) return undefined;
    const updated = Object.assign(job, patch);
    this.logger.log(`job ${job.id} (${job.kind}) failed at attempt ${job.attempt}: ${error.code}`);
    this.events.emit('failed', { job: updated, previousState, bySite });
    return updated;
  }
}
