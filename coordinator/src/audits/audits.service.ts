import {
  ConflictException,
  Inject,
  Injectable,
  Logger,
  NotFoundException,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { renderSliceGrid } from '@fedsynth/common/imaging/index';
import type { AuditPayload } from '@fedsynth/common/protocol/job-payloads';
import { SliceStoreReader, SliceStoreWriter } from '@fedsynth/common/slices/index';
import { In, type Repository } from 'typeorm';
import { BlobsService } from '../blobs/blobs.service.js';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { JobEvents } from '../jobs/job-events.js';
import type { Job } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { SitesService } from '../sites/sites.service.js';
import { StudiesService } from '../studies/studies.service.js';
import { AuditScoresRefused, combineSites, flaggedOf, histogram, parseAuditScores } from './audit-scores.js';
import { Audit, type AuditSiteResult, type AuditSource, type AuditState } from './audit.entity.js';

/** A site's scores are numbers only: a pool of a million candidates is ~20 MB of JSON. */
const MAX_SCORES_BYTES = 64 * 1024 * 1024;
const MAX_CONTENTION_RETRIES = 16;

/** The round id of an audit's jobs (jobs are found by study and round). */
export const auditRoundId = (auditId: string) => `audit:${auditId}`;

/**
 * The audit round (DESIGN.md step 6): one candidate pool from the study's samples, one 'audit' job per active site,
 * their scores checked and combined (maximum over sites; a candidate any site flags is withheld), then a human
 * decision. State lives in the `audits` table; every step is idempotent and resumes after a restart.
 */
@Injectable()
export class AuditsService implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(AuditsService.name);
  private readonly unsubscribe: Array<() => void> = [];
  /** in-flight handling of job events (tests await it) */
  private readonly pending = new Set<Promise<void>>();
  /**
   * Per audit, each scored site's per-candidate scores, parsed once when its answer arrived (combine needs them
   * all; the row keeps only histograms). Dropped when the audit leaves 'scoring'; after a restart a missing entry
   * is re-read from the site's scores blob.
   */
  private readonly parsedScores = new Map<string, Map<string, Float64Array>>();

  constructor(
    @InjectRepository(Audit) private readonly audits: Repository<Audit>,
    private readonly jobs: JobsService,
    private readonly jobEvents: JobEvents,
    private readonly blobs: BlobsService,
    private readonly sites: SitesService,
    private readonly studies: StudiesService,
    private readonly clock: Clock,
    private readonly random: RandomSource,
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
  ) {}

  onModuleInit(): void {
    this.unsubscribe.push(
      this.jobEvents.on('done', ({ job }) => this.track(() => this.onJobDone(job))),
      this.jobEvents.on('failed', ({ job }) => this.track(() => this.onJobFailed(job))),
    );
  }

  /** Resumes audits left in 'scoring': enqueues missing jobs, takes in results that arrived while down. */
  async onApplicationBootstrap(): Promise<void> {
    for (const audit of await this.audits.find({ where: { state: 'scoring' } })) {
      await this.track(() => this.resume(audit.id));
    }
  }

  onModuleDestroy(): void {
    this.unsubscribe.forEach((u) => u());
  }

  /** Resolves when every job event received so far has been handled. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  // ------------------------------------------------------------------------------------------ start

  /**
   * Starts the audit of a finished generator study's pool. 404: no such study; 409 (naming the reason): the study is
   * not a generator study or not 'done', it pooled no samples, a samples blob is missing or malformed, or a site
   * that contributed samples can no longer audit (revoked or not active): its own private slices — the ones its
   * generator could have memorized — would go unchecked, so the audit is refused rather than run without it.
   */
  async start(studyId: string, margin: number, createdBy: string | null = null): Promise<Audit> {
    const study = await this.studies.get(studyId);
    if (study.model.task !== 'generator') {
      throw new ConflictException(
        `study ${study.name} trains a ${study.model.task}; only generator studies are audited`,
      );
    }
    if (study.state !== 'done') {
      throw new ConflictException(
        `study ${study.name} is ${study.state}; only a done study's pool can be audited`,
      );
    }
    const allSites = await this.sites.list();
    const sites = allSites.filter((s) => s.status === 'active');
    const sources = await this.poolSources(studyId, `${study.model.model}/${study.model.profile}`);
    for (const siteId of new Set(sources.map((s) => s.siteId))) {
      const site = allSites.find((s) => s.id === siteId);
      if (site?.status !== 'active') {
        throw new ConflictException(
          `site ${site?.name ?? siteId} contributed samples to study ${study.name} but is ` +
            `${site?.status ?? 'unknown'}, so it cannot audit them; the audit needs every contributing site`,
        );
      }
    }

    const id = this.random.uuid();
    const tmpDir = path.join(this.config.dataDir, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    const poolFile = path.join(tmpDir, `audit-pool-${id}.fss`);
    let candidateCount = 0;
    let poolSha256: string;
    try {
      candidateCount = await this.writePool(poolFile, sources);
      const record = await this.blobs.storeFile(poolFile, {
        kind: 'audit-pool',
        meta: { auditId: id, studyId },
      });
      poolSha256 = record.sha256;
    } finally {
      await rm(poolFile, { force: true });
      await rm(`${poolFile}.partial`, { force: true });
    }
    const now = this.clock.now();
    const audit = this.audits.create({
      id,
      studyId,
      state: 'scoring',
      margin,
      candidateCount,
      poolSha256,
      sources,
      siteResults: sites.map((s) => ({
        siteId: s.id,
        siteName: s.name,
        jobId: null,
        state: 'pending' as const,
      })),
      combined: null,
      error: null,
      revision: 1,
      createdBy,
      decidedBy: null,
      decisionComment: null,
      decidedAt: null,
      createdAt: now,
      updatedAt: now,
    });
    await this.audits.insert(audit as never);
    await this.resume(id);
    return this.get(id);
  }

  /**
   * The study's pool as the orchestrator recorded it (StudiesService.poolOf: one row per site that delivered, in
   * pooling order): each blob is opened and checked against its row (count, slice size).
   */
  private async poolSources(studyId: string, generator: string): Promise<AuditSource[]> {
    const sources: AuditSource[] = [];
    let first = 0;
    let size: number | undefined;
    for (const row of await this.studies.poolOf(studyId)) {
      const what = `the samples of site ${row.siteId} (job ${row.jobId})`;
      if (!(await this.blobs.stat(row.sha256))) {
        throw new ConflictException(`${what}: blob ${row.sha256} is not in the store`);
      }
      let reader: SliceStoreReader;
      try {
        reader = await SliceStoreReader.open(this.blobs.store.pathOf(row.sha256));
      } catch (error) {
        throw new ConflictException(`${what}: blob ${row.sha256}: ${(error as Error).message}`);
      }
      const count = reader.count;
      const storeSize = reader.meta.size;
      await reader.close();
      if (count !== row.count) {
        throw new ConflictException(
          `${what}: the blob holds ${count} slices, the pool recorded ${row.count}`,
        );
      }
      if (size !== undefined && storeSize !== size) {
        throw new ConflictException(`${what}: ${storeSize}² slices, the pool has ${size}²`);
      }
      size = storeSize;
      if (count === 0) continue;
      sources.push({
        jobId: row.jobId,
        siteId: row.siteId,
        sha256: row.sha256,
        first,
        count,
        generator,
        seed: row.seed,
      });
      first += count;
    }
    if (sources.length === 0) throw new ConflictException(`study ${studyId} has no samples to audit`);
    return sources;
  }

  /** Concatenates the sources into one slice store (one "subject" per source); returns the candidate count. */
  private async writePool(file: string, sources: readonly AuditSource[]): Promise<number> {
    let writer: SliceStoreWriter | undefined;
    try {
      for (const [k, source] of sources.entries()) {
        const reader = await SliceStoreReader.open(this.blobs.store.pathOf(source.sha256));
        try {
          if (!writer) {
            const { preset, scale, size, channels, dtype, layout, annotation } = reader.meta;
            writer = await SliceStoreWriter.create(file, {
              preset,
              scale,
              size,
              channels,
              dtype,
              layout,
              annotation,
              split: { seed: 0, testFraction: 0 },
              createdAt: this.clock.now().toISOString(),
            });
          }
          for (let start = 0; start < reader.count; start += 256) {
            const n = Math.min(256, reader.count - start);
            await writer.addSubject(
              {
                id: `candidates-${k}-${start}`,
                split: 'train',
                labelled: true,
                z: Array.from({ length: n }, (_, i) => source.first + start + i),
                sourceDims: [reader.meta.size, reader.meta.size, 1],
                reference: {},
              },
              await reader.readRange(start, n),
            );
          }
        } finally {
          await reader.close();
        }
      }
      const meta = await writer!.close();
      return meta.count;
    } catch (error) {
      await writer?.abort();
      throw error;
    }
  }

  // ------------------------------------------------------------------------------------------ jobs

  private async resume(auditId: string): Promise<void> {
    const audit = await this.get(auditId);
    if (audit.state !== 'scoring') return;
    const jobs = await this.jobs.list({
      studyId: audit.studyId,
      roundId: auditRoundId(audit.id),
      kind: 'audit',
    });
    const pool = await this.blobs.stat(audit.poolSha256);
    if (!pool) {
      await this.failAudit(audit.id, `the candidate pool ${audit.poolSha256} is missing from the blob store`);
      return;
    }
    for (const site of audit.siteResults) {
      let job = jobs.find((j) => j.siteId === site.siteId);
      if (!job) {
        const payload: AuditPayload = { studyId: audit.studyId, auditId: audit.id, margin: audit.margin };
        try {
          job = await this.jobs.enqueue(site.siteId, 'audit', payload, {
            studyId: audit.studyId,
            roundId: auditRoundId(audit.id),
            inputs: [{ role: 'audit-pool', sha256: pool.sha256, size: pool.size, kind: 'audit-pool' }],
          });
        } catch (error) {
          await this.failAudit(
            audit.id,
            `site ${site.siteName} could not be given its audit job: ${(error as Error).message}`,
          );
          return;
        }
      }
      const jobId = job.id;
      if (site.jobId !== jobId) {
        await this.update(audit.id, (a) => {
          const s = a.siteResults.find((r) => r.siteId === site.siteId);
          if (!s || s.jobId === jobId) return undefined;
          s.jobId = jobId;
          return { siteResults: a.siteResults };
        });
      }
      if (job.state === 'done') await this.onJobDone(job);
      else if (job.state === 'failed') await this.onJobFailed(job);
    }
    // every site scored but not combined: the process stopped between the last site's update and combine()
    const now = await this.get(auditId);
    if (now.state === 'scoring' && now.siteResults.every((s) => s.state === 'scored'))
      await this.combine(auditId);
  }

  private auditIdOf(job: Job): string | undefined {
    if (job.kind !== 'audit') return undefined;
    const id = job.payload.auditId;
    return typeof id === 'string' && job.roundId === auditRoundId(id) ? id : undefined;
  }

  private async onJobDone(job: Job): Promise<void> {
    const auditId = this.auditIdOf(job);
    if (!auditId) return;
    const audit = await this.audits.findOneBy({ id: auditId });
    const site = audit?.siteResults.find((s) => s.siteId === job.siteId);
    if (!audit || audit.state !== 'scoring' || !site || site.state !== 'pending') return;

    let result: AuditSiteResult;
    let parsed: Float64Array;
    try {
      const output = job.result?.outputs.find((o) => o.role === 'scores');
      if (!output) throw new AuditScoresRefused('the job returned no "scores" output');
      if (output.size > MAX_SCORES_BYTES)
        throw new AuditScoresRefused(`the scores blob is ${output.size} bytes`);
      const scores = parseAuditScores(
        await readFile(this.blobs.store.pathOf(output.sha256), 'utf8'),
        audit.candidateCount,
      );
      const flagged = flaggedOf(scores);
      parsed = Float64Array.from(scores.scores);
      result = {
        ...site,
        jobId: job.id,
        state: 'scored',
        scoresSha256: output.sha256,
        threshold: scores.threshold,
        flagged,
        maxScore: scores.scores.reduce((m, s) => Math.max(m, s), -1),
        scoreHistogram: histogram(scores.scores),
        referenceHistogram: histogram(scores.reference),
        referenceCount: scores.reference.length,
        // A site from before the field sent none: its reference was its held-out slices.
        referenceKind: scores.referenceKind ?? 'held-out',
      };
    } catch (error) {
      const reason =
        error instanceof AuditScoresRefused
          ? error.message
          : `unreadable scores: ${(error as Error).message}`;
      this.logger.warn(`audit ${auditId}: refused the scores of site ${site.siteName}: ${reason}`);
      await this.update(auditId, (a) => {
        if (a.state !== 'scoring') return undefined;
        const s = a.siteResults.find((r) => r.siteId === job.siteId)!;
        Object.assign(s, { jobId: job.id, state: 'refused', error: reason });
        return {
          siteResults: a.siteResults,
          state: 'failed',
          error: `site ${site.siteName}'s audit result was refused: ${reason}`,
        };
      });
      await this.cancelOpenJobs(auditId);
      return;
    }

    const updated = await this.update(auditId, (a) => {
      if (a.state !== 'scoring') return undefined;
      const i = a.siteResults.findIndex((r) => r.siteId === job.siteId);
      if (i < 0 || a.siteResults[i]!.state !== 'pending') return undefined;
      a.siteResults[i] = result;
      return { siteResults: a.siteResults };
    });
    if (!updated) return;
    const cache = this.parsedScores.get(auditId) ?? new Map<string, Float64Array>();
    cache.set(job.siteId, parsed);
    this.parsedScores.set(auditId, cache);
    if (updated.siteResults.every((s) => s.state === 'scored')) await this.combine(auditId);
  }

  private async combine(auditId: string): Promise<void> {
    const audit = await this.get(auditId);
    if (audit.state !== 'scoring') return;
    const cache = this.parsedScores.get(auditId);
    const perSite = [];
    for (const site of audit.siteResults) {
      // parsed when the answer came in; only after a restart is a site's blob read again
      const scores =
        cache?.get(site.siteId) ??
        parseAuditScores(
          await readFile(this.blobs.store.pathOf(site.scoresSha256!), 'utf8'),
          audit.candidateCount,
        ).scores;
      perSite.push({ scores, flagged: site.flagged ?? [] });
    }
    const combined = combineSites(perSite);
    this.parsedScores.delete(auditId);
    await this.update(auditId, (a) =>
      a.state === 'scoring' && a.siteResults.every((s) => s.state === 'scored')
        ? { state: 'scored', combined }
        : undefined,
    );
    this.logger.log(
      `audit ${auditId} scored: ${combined.withheld.length} of ${audit.candidateCount} candidates withheld`,
    );
  }

  private async onJobFailed(job: Job): Promise<void> {
    const auditId = this.auditIdOf(job);
    if (!auditId) return;
    const audit = await this.audits.findOneBy({ id: auditId });
    const site = audit?.siteResults.find((s) => s.siteId === job.siteId);
    if (!audit || audit.state !== 'scoring' || !site || site.state !== 'pending') return;
    const why = job.error ? `${job.error.code}: ${job.error.message}` : 'failed';
    await this.update(auditId, (a) => {
      if (a.state !== 'scoring') return undefined;
      const s = a.siteResults.find((r) => r.siteId === job.siteId)!;
      Object.assign(s, { jobId: job.id, state: 'failed', error: why });
      return {
        siteResults: a.siteResults,
        state: 'failed',
        error: `site ${site.siteName} could not audit the pool (${why})`,
      };
    });
    await this.cancelOpenJobs(auditId);
  }

  private async failAudit(auditId: string, error: string): Promise<void> {
    this.logger.error(`audit ${auditId} failed: ${error}`);
    await this.update(auditId, (a) => (a.state === 'scoring' ? { state: 'failed', error } : undefined));
    await this.cancelOpenJobs(auditId);
  }

  /** The other sites need not keep working on a failed audit. */
  private async cancelOpenJobs(auditId: string): Promise<void> {
    this.parsedScores.delete(auditId);
    const audit = await this.get(auditId);
    for (const job of await this.jobs.list({ studyId: audit.studyId, roundId: auditRoundId(auditId) })) {
      if (job.state !== 'done' && job.state !== 'failed')
        await this.jobs.cancel(job.id, `audit ${auditId} failed`);
    }
  }

  // ------------------------------------------------------------------------------------------ decision, reads

  async decide(id: string, approve: boolean, comment: string | null, userId: string): Promise<Audit> {
    const audit = await this.get(id);
    if (audit.state !== 'scored') {
      throw new ConflictException(`audit ${id} is ${audit.state}; only a scored audit can be decided (once)`);
    }
    const now = this.clock.now();
    const r = await this.audits.update(
      { id, state: 'scored', revision: audit.revision },
      {
        state: approve ? 'approved' : 'rejected',
        decidedBy: userId,
        decisionComment: comment,
        decidedAt: now,
        updatedAt: now,
        revision: audit.revision + 1,
      },
    );
    if (r.affected !== 1) throw new ConflictException(`audit ${id} was decided or changed concurrently`);
    return this.get(id);
  }

  async get(id: string): Promise<Audit> {
    const audit = await this.audits.findOneBy({ id });
    if (!audit) throw new NotFoundException(`no audit ${id}`);
    return audit;
  }

  list(filter: { studyId?: string; state?: AuditState[] } = {}): Promise<Audit[]> {
    return this.audits.find({
      where: {
        ...(filter.studyId ? { studyId: filter.studyId } : {}),
        ...(filter.state ? { state: In(filter.state) } : {}),
      },
      order: { createdAt: 'ASC', id: 'ASC' },
    });
  }

  /** A PNG of one synthetic candidate of the pool (never anything of a site's private data). */
  async candidatePng(id: string, index: number): Promise<Buffer> {
    const audit = await this.get(id);
    if (!Number.isInteger(index) || index < 0 || index >= audit.candidateCount) {
      throw new NotFoundException(`audit ${id} has no candidate ${index} (pool of ${audit.candidateCount})`);
    }
    const reader = await SliceStoreReader.open(this.blobs.store.pathOf(audit.poolSha256));
    try {
      const slice = await reader.readIndices([index]);
      return renderSliceGrid(slice, 1, { size: reader.meta.size, channels: reader.meta.channels.length });
    } finally {
      await reader.close();
    }
  }

  // ------------------------------------------------------------------------------------------ internals

  /**
   * Read-modify-write with optimistic concurrency: `change` gets a fresh copy and returns the columns to set (or
   * undefined for "nothing to do"); retried when another writer got there first. Returns the updated row.
   */
  private async update(
    id: string,
    change: (
      audit: Audit,
    ) => Partial<Pick<Audit, 'state' | 'siteResults' | 'combined' | 'error'>> | undefined,
  ): Promise<Audit | undefined> {
    for (let i = 0; i < MAX_CONTENTION_RETRIES; i++) {
      const audit = await this.get(id);
      const patch = change(audit);
      if (!patch) return undefined;
      const r = await this.audits.update({ id, revision: audit.revision }, {
        ...patch,
        revision: audit.revision + 1,
        updatedAt: this.clock.now(),
      } as never);
      if (r.affected === 1) return Object.assign(audit, patch, { revision: audit.revision + 1 });
    }
    throw new ConflictException(`audit ${id} keeps changing; try again`);
  }

  private track(work: () => Promise<void>): Promise<void> {
    const p = work()
      .catch((error: unknown) =>
        this.logger.error(`audit bookkeeping failed: ${(error as Error).stack ?? String(error)}`),
      )
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
    return p;
  }
}
