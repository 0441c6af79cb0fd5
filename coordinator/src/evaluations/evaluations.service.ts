import {
  BadRequestException,
  ConflictException,
  Injectable,
  Logger,
  NotFoundException,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { EvaluatePayload, EvaluationSummary } from '@fedsynth/common/protocol/index';
import type { Repository } from 'typeorm';
import { BlobsService } from '../blobs/blobs.service.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { JobEvents } from '../jobs/job-events.js';
import type { Job } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { IntervalScheduler } from '../jobs/interval-scheduler.js';
import { SitesService } from '../sites/sites.service.js';
import { TypedEvents } from '../jobs/typed-events.js';
import { Evaluation, type SiteEvaluation } from './evaluation.entities.js';
import { aggregateSummaries, parseEvaluationSummary, SummaryRefusedError } from './evaluation-aggregate.js';
import { SegmentationService } from './segmentation.service.js';

/** What to evaluate: a central segmenter run (done), or any stored segmenter weights (with the study they belong to). */
export type EvaluationTarget = { segmenterRunId: string } | { weightsSha256: string; studyId: string };

/** How often running evaluations are checked against their jobs (a missed event, a restart). */
const RECONCILE_EVERY_MS = 30_000;

export interface EvaluationEventMap {
  finished: { evaluation: Evaluation };
}

/**
 * Federated evaluation: one 'evaluate' job per active site with the segmenter as input role 'segmenter'; each site
 * answers with an EvaluationSummary (metrics only), checked here — an invalid one is refused for that site with
 * the reason. When every site has answered (or failed), the means over all subjects of all accepted sites are
 * stored. State lives in the `evaluations` row (job ids per site), so a restarted coordinator picks up where it
 * was: at start and every RECONCILE_EVERY_MS the open evaluations are checked against their jobs.
 */
@Injectable()
export class EvaluationsService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(EvaluationsService.name);
  readonly events = new TypedEvents<EvaluationEventMap>();
  private readonly cleanups: Array<() => void> = [];
  /** updates of evaluation rows run one after the other (two sites answering at once edit the same JSON column) */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    @InjectRepository(Evaluation) private readonly evaluations: Repository<Evaluation>,
    private readonly jobs: JobsService,
    private readonly jobEvents: JobEvents,
    private readonly sites: SitesService,
    private readonly blobs: BlobsService,
    private readonly segmentation: SegmentationService,
    private readonly scheduler: IntervalScheduler,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const onJob = ({ job }: { job: Job }) => {
      if (job.kind !== 'evaluate') return;
      void this.serial(() => this.applyJob(job.id)).catch((error: unknown) =>
        this.logger.error(`evaluate job ${job.id}: ${(error as Error).message}`),
      );
    };
    this.cleanups.push(this.jobEvents.on('done', onJob), this.jobEvents.on('failed', onJob));
    this.cleanups.push(
      this.scheduler.every(RECONCILE_EVERY_MS, () => this.reconcile().then(() => undefined)),
    );
    await this.reconcile();
  }

  onModuleDestroy(): void {
    for (const c of this.cleanups.splice(0)) c();
  }

  /** Sends the segmenter to every active site; returns the new (running) evaluation. */
  async evaluate(target: EvaluationTarget, label: string): Promise<Evaluation> {
    if (!label || label.length > 128) throw new BadRequestException('label: 1–128 characters');
    let weightsSha256: string;
    let studyId: string;
    let segmenterRunId: string | null = null;
    if ('segmenterRunId' in target) {
      const run = await this.segmentation.get(target.segmenterRunId);
      if (run.state !== 'done' || !run.weightsSha256) {
        throw new ConflictException(`segmenter run ${run.id} is ${run.state}, not done: nothing to evaluate`);
      }
      weightsSha256 = run.weightsSha256;
      studyId = run.studyId;
      segmenterRunId = run.id;
    } else {
      weightsSha256 = target.weightsSha256;
      studyId = target.studyId;
    }
    const blob = await this.blobs.stat(weightsSha256);
    if (!blob) throw new NotFoundException(`no segmenter weights ${weightsSha256} in the blob store`);
    const active = (await this.sites.list()).filter((s) => s.status === 'active');
    if (active.length === 0) throw new ConflictException('no active site to evaluate on');
    const payload: EvaluatePayload = { studyId, label };
    const sites: Record<string, SiteEvaluation> = {};
    for (const site of active) {
      const job = await this.jobs.enqueue(site.id, 'evaluate', payload, {
        inputs: [{ role: 'segmenter', sha256: blob.sha256, size: blob.size, kind: 'segmenter' }],
        studyId,
      });
      sites[site.id] = { jobId: job.id, state: 'pending' };
    }
    const now = this.clock.now();
    const evaluation = this.evaluations.create({
      id: this.random.uuid(),
      label,
      studyId,
      segmenterRunId,
      weightsSha256,
      state: 'running',
      sites,
      result: null,
      error: null,
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
    });
    await this.evaluations.insert(evaluation as never);
    this.logger.log(
      `evaluation ${evaluation.id} (${label}): 'evaluate' jobs queued at ${active.length} sites`,
    );
    // A site may have answered before the row existed (jobs are offered at once).
    await this.serial(() => this.reconcileOne(evaluation.id));
    return this.get(evaluation.id);
  }

  async get(id: string): Promise<Evaluation> {
    const evaluation = await this.evaluations.findOneBy({ id });
    if (!evaluation) throw new NotFoundException(`no evaluation ${id}`);
    return evaluation;
  }

  list(filter: { studyId?: string; weightsSha256?: string } = {}): Promise<Evaluation[]> {
    return this.evaluations.find({ where: { ...filter }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  /** Checks every running evaluation against its jobs; returns the ids that finished. */
  async reconcile(): Promise<string[]> {
    const running = await this.evaluations.find({ where: { state: 'running' } });
    const finished: string[] = [];
    for (const e of running) {
      const state = await this.serial(() => this.reconcileOne(e.id));
      if (state !== 'running') finished.push(e.id);
    }
    return finished;
  }

  // ------------------------------------------------------------------------------------------ internals

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async applyJob(jobId: string): Promise<void> {
    const running = await this.evaluations.find({ where: { state: 'running' } });
    const owner = running.find((e) => Object.values(e.sites).some((s) => s.jobId === jobId));
    if (owner) await this.reconcileOne(owner.id);
  }

  /** Records every site whose job ended, and finishes the evaluation when none is pending. */
  private async reconcileOne(id: string): Promise<Evaluation['state']> {
    const evaluation = await this.get(id);
    if (evaluation.state !== 'running') return evaluation.state;
    let changed = false;
    for (const [siteId, site] of Object.entries(evaluation.sites)) {
      if (site.state !== 'pending') continue;
      const job = await this.jobs.get(site.jobId).catch(() => undefined);
      if (!job) {
        evaluation.sites[siteId] = { ...site, state: 'failed', error: `job ${site.jobId} is gone` };
        changed = true;
      } else if (job.state === 'done') {
        evaluation.sites[siteId] = this.acceptSummary(evaluation, siteId, site, job.result?.summary);
        changed = true;
      } else if (job.state === 'failed') {
        const reason = job.error ? `${job.error.code}: ${job.error.message}` : 'failed';
        evaluation.sites[siteId] = { ...site, state: 'failed', error: reason };
        changed = true;
      }
    }
    const pending = Object.values(evaluation.sites).some((s) => s.state === 'pending');
    if (!changed && pending) return 'running';
    const now = this.clock.now();
    const patch: Partial<Evaluation> = { sites: evaluation.sites, updatedAt: now };
    if (!pending) {
      const accepted: Record<string, EvaluationSummary> = {};
      for (const [siteId, s] of Object.entries(evaluation.sites)) {
        if (s.state === 'done' && s.summary) accepted[siteId] = s.summary;
      }
      patch.finishedAt = now;
      if (Object.keys(accepted).length > 0) {
        patch.state = 'done';
        patch.result = aggregateSummaries(accepted);
      } else {
        patch.state = 'failed';
        patch.error = Object.entries(evaluation.sites)
          .map(([siteId, s]) => `site ${siteId}: ${s.error ?? s.state}`)
          .join('; ')
          .slice(0, 4000);
      }
    }
    await this.evaluations.update({ id, state: 'running' }, patch as never);
    const updated = await this.get(id);
    if (updated.state !== 'running') {
      this.logger.log(
        `evaluation ${id} (${updated.label}) ${updated.state}` +
          (updated.result ? `: ${updated.result.subjects} subjects at ${updated.result.sites} sites` : ''),
      );
      this.events.emit('finished', { evaluation: updated });
    }
    return updated.state;
  }

  private acceptSummary(
    evaluation: Evaluation,
    siteId: string,
    site: SiteEvaluation,
    raw: unknown,
  ): SiteEvaluation {
    try {
      return { jobId: site.jobId, state: 'done', summary: parseEvaluationSummary(raw) };
    } catch (error) {
      if (!(error instanceof SummaryRefusedError)) throw error;
      this.logger.warn(`evaluation ${evaluation.id}: site ${siteId}'s result refused: ${error.message}`);
      return { jobId: site.jobId, state: 'refused', error: `result refused: ${error.message}` };
    }
  }
}
