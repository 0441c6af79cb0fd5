import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { studyModelArchitecture } from '@fedsynth/common/ml/jobs/federated-jobs';
import { modelInputSize } from '@fedsynth/common/ml/jobs/job-files';
import { samplePayloadSchema, trainRoundPayloadSchema } from '@fedsynth/common/protocol/index';
import { SLICE_CHANNELS, SliceStoreReader } from '@fedsynth/common/slices/index';
import { In, type Repository } from 'typeorm';
import { BlobsService } from '../blobs/blobs.service.js';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { TransactionRunner } from '../database/transaction-runner.js';
import { isUniqueViolation } from '../database/unique-violation.js';
import { IntervalScheduler } from '../jobs/interval-scheduler.js';
import { JobEvents } from '../jobs/job-events.js';
import type { Job, JobInputRecord, JsonValue } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { SiteSession } from '../federation/site-session.entity.js';
import { SitesService } from '../sites/sites.service.js';
import { FedAvgWorkerError, fedAvgInWorker } from './fedavg-in-worker.js';
import { STUDIES_OPTIONS, type StudiesOptions } from './studies.options.js';
import { StudyEvents } from './study-events.js';
import { StudyMetrics } from './study-metrics.js';
import {
  PoolSample,
  STUDY_STATES,
  Study,
  StudyRound,
  type RoundContribution,
  type StudyState,
} from './study.entity.js';

/** A pair of weights blobs: the model, and its moving average when the model keeps one. */
export interface WeightsPair {
  weights: string;
  ema: string | null;
}

/** A study's final weights: the global model (fedavg) and/or each site's own (local). */
export interface FinalWeights {
  mode: Study['mode'];
  global: WeightsPair | null;
  bySite: Record<string, WeightsPair>;
}

/** Where one participant stands in a round. */
interface RoundTally {
  contributions: Map<string, RoundContribution>;
  failed: Map<string, string>;
  pending: Job[];
}

const LIVE_STATES: StudyState[] = ['running', 'sampling'];
/** the jobs the orchestrator makes (other modules' jobs, e.g. audits, carry a studyId too) */
const STUDY_JOB_KINDS = ['train-round', 'sample'] as const;
const UNFINISHED_JOB_STATES = ['queued', 'assigned', 'running', 'uploading'] as const;
/** a training round stuck below minSites fails this many round timeouts after it opened */
export const GIVE_UP_AFTER_ROUND_TIMEOUTS = 3;

/** A job seed per sampling site, derived from the study seed so that sites draw different slices. */
export function sampleSeed(studySeed: number, siteId: string): number {
  return createHash('sha256').update(`${studySeed}:${siteId}`).digest().readUInt32BE(0) & 0x7fffffff;
}

/**
 * The round state machine of every study. All state is in the database (studies, study_rounds, jobs,
 * pool_samples) and every step re-reads it, so a step is idempotent and a restarted coordinator simply continues:
 *
 *   round r open ── one train-round job per active selected site ──▶ every job finished, or the deadline passed
 *   with ≥ minSites contributions ──▶ late jobs cancelled, outputs averaged (fedavg) ──▶ round r+1 open …
 *   after the last round: generator → sampling (one sample job per site, outputs pooled) → done;
 *   segmenter → done (the final global weights are the study's model).
 *
 * Steps of one study never overlap (a per-study async mutex); they run on job events, on a timer (deadlines) and at
 * start-up (resume).
 */
@Injectable()
export class StudyOrchestrator implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(StudyOrchestrator.name);
  private readonly locks = new Map<string, Promise<void>>();
  /** rounds whose "deadline passed with too few sites" warning was logged */
  private readonly warned = new Set<string>();
  /** job ids whose refused result (sample store, trainSlices) was logged */
  private readonly refusalsLogged = new Set<string>();
  private readonly cleanups: Array<() => void> = [];
  private closing = false;

  constructor(
    @InjectRepository(Study) private readonly studies: Repository<Study>,
    @InjectRepository(StudyRound) private readonly rounds: Repository<StudyRound>,
    @InjectRepository(PoolSample) private readonly pool: Repository<PoolSample>,
    @InjectRepository(SiteSession) private readonly sessions: Repository<SiteSession>,
    private readonly jobs: JobsService,
    private readonly jobEvents: JobEvents,
    private readonly blobs: BlobsService,
    private readonly sites: SitesService,
    private readonly clock: Clock,
    private readonly random: RandomSource,
    private readonly transactions: TransactionRunner,
    readonly events: StudyEvents,
    private readonly metrics: StudyMetrics,
    private readonly scheduler: IntervalScheduler,
    @Inject(STUDIES_OPTIONS) private readonly options: StudiesOptions,
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
  ) {}

  onModuleInit(): void {
    const onJob = ({ job }: { job: Job }) => {
      if (job.studyId && (job.kind === 'train-round' || job.kind === 'sample')) this.kick(job.studyId);
    };
    this.cleanups.push(this.jobEvents.on('done', onJob), this.jobEvents.on('failed', onJob));
    if (this.options.tickIntervalMs > 0) {
      this.cleanups.push(this.scheduler.every(this.options.tickIntervalMs, () => this.tick()));
    }
  }

  /** After a restart: cancel jobs that outlived their study, then resume every running or sampling study. */
  async onApplicationBootstrap(): Promise<void> {
    await this.cancelOrphanJobs(); // before the gateway offers anything (quick: one query)
    void this.tick();
  }

  /**
   * Cancels unfinished train-round/sample jobs of studies that are no longer live (end() marks the study first,
   * then cancels its jobs: a crash in between leaves jobs that must not be offered). Number cancelled.
   */
  async cancelOrphanJobs(): Promise<number> {
    let cancelled = 0;
    try {
      const open = (await this.jobs.list({ state: [...UNFINISHED_JOB_STATES] })).filter((job) =>
        (STUDY_JOB_KINDS as readonly string[]).includes(job.kind),
      );
      const studyIds = [...new Set(open.flatMap((job) => (job.studyId ? [job.studyId] : [])))];
      if (studyIds.length === 0) return 0;
      const studies = await this.studies.findBy({ id: In(studyIds) });
      const ended = new Map(studies.filter((s) => !LIVE_STATES.includes(s.state)).map((s) => [s.id, s]));
      for (const job of open) {
        const study = job.studyId ? ended.get(job.studyId) : undefined;
        if (!study) continue;
        try {
          await this.jobs.cancel(job.id, `study ${study.name} is ${study.state}`);
          cancelled++;
        } catch (error) {
          this.logger.error(
            `cancelling job ${job.id} of ended study ${study.id}: ${(error as Error).message}`,
          );
        }
      }
      if (cancelled) this.logger.log(`cancelled ${cancelled} unfinished job(s) of ended studies`);
    } catch (error) {
      this.logger.error(`cancelling jobs of ended studies: ${(error as Error).message}`);
    }
    return cancelled;
  }

  async onModuleDestroy(): Promise<void> {
    this.closing = true;
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    await Promise.all([...this.locks.values()]); // let steps in flight finish before the database closes
  }

  /** One step for every live study (deadlines; start-up). Errors are logged per study. */
  async tick(): Promise<void> {
    if (this.closing) return;
    let live: Study[];
    try {
      live = await this.studies.find({ where: { state: In(LIVE_STATES) }, order: { createdAt: 'ASC' } });
    } catch (error) {
      this.logger.error(`listing live studies: ${(error as Error).message}`);
      return;
    }
    for (const study of live) {
      try {
        await this.advance(study.id);
      } catch (error) {
        this.logger.error(`study ${study.id}: ${(error as Error).message}`);
      }
    }
  }

  /** Runs one step of the study (idempotent); resolves when it is stored. */
  advance(studyId: string): Promise<void> {
    return this.withLock(studyId, async () => {
      await this.step(studyId);
      await this.refreshGauge();
    });
  }

  /** Cancels a live study and its unfinished jobs; returns the study (unchanged when already finished). */
  cancel(studyId: string, reason = 'cancelled by an admin'): Promise<Study> {
    return this.withLock(studyId, async () => {
      const study = await this.studies.findOneByOrFail({ id: studyId });
      if (!LIVE_STATES.includes(study.state)) return study;
      const ended = await this.end(study, 'cancelled', reason);
      if (ended) this.events.emit('studyCancelled', { study: ended });
      await this.refreshGauge();
      return ended ?? (await this.studies.findOneByOrFail({ id: studyId }));
    });
  }

  /** The final weights of a study whose training ended (undefined while it trains). */
  async finalWeightsOf(study: Study): Promise<FinalWeights | undefined> {
    if (study.currentRound < study.rounds) return undefined;
    const last = await this.rounds.findOneBy({ studyId: study.id, index: study.rounds - 1 });
    if (!last || last.state !== 'done') return undefined;
    const global =
      study.mode === 'fedavg' && last.outputWeightsSha256
        ? { weights: last.outputWeightsSha256, ema: last.outputEmaSha256 }
        : null;
    const bySite: Record<string, WeightsPair> = {};
    for (const siteId of study.siteIds) {
      const own = await this.latestContribution(study.id, siteId, study.rounds);
      if (own) bySite[siteId] = { weights: own.weightsSha256, ema: own.emaSha256 };
    }
    return { mode: study.mode, global, bySite };
  }

  // ------------------------------------------------------------------------------------------ steps

  private kick(studyId: string): void {
    if (this.closing) return;
    this.advance(studyId).catch((error: unknown) =>
      this.logger.error(`study ${studyId}: ${(error as Error).message}`),
    );
  }

  private withLock<T>(studyId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(studyId) ?? Promise.resolve();
    const run = previous.then(work);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(studyId, tail);
    void tail.then(() => {
      if (this.locks.get(studyId) === tail) this.locks.delete(studyId);
    });
    return run;
  }

  private async step(studyId: string): Promise<void> {
    // a closed round opens the next one in the same step: loop until nothing changes (bounded by the rounds)
    for (let guard = 0; guard < 100_000; guard++) {
      const study = await this.studies.findOneBy({ id: studyId });
      if (!study) return;
      let progressed = false;
      try {
        if (study.state === 'running') progressed = await this.stepTraining(study);
        else if (study.state === 'sampling') progressed = await this.stepSampling(study);
      } catch (error) {
        if (!(error instanceof StudyError)) throw error;
        await this.fail(study, error.message);
        return;
      }
      if (!progressed) return;
    }
  }

  /** Training: make sure the current round has its jobs; close it when it may. true when the round closed. */
  private async stepTraining(study: Study): Promise<boolean> {
    const round =
      (await this.rounds.findOneBy({ studyId: study.id, index: study.currentRound })) ??
      (await this.openRound(study, study.currentRound));
    if (round.state === 'done') {
      // closed, but the study did not move on (should not happen: both change in one transaction)
      throw new StudyError(`round ${round.index} is closed but the study is still at it`);
    }
    const tally = await this.tallyRound(study, round);
    const done = tally.contributions.size;
    const pastDeadline = this.clock.now().getTime() >= round.deadline.getTime();
    if (done + tally.pending.length < study.minSites) {
      const failures = [...tally.failed].map(([siteId, why]) => `site ${siteId}: ${why}`).join('; ');
      throw new StudyError(
        `round ${round.index}: only ${done + tally.pending.length} of ${round.participants.length} site(s) can ` +
          `still finish but the study needs minSites = ${study.minSites}` +
          (failures ? ` (failed: ${failures})` : ''),
      );
    }
    if (tally.pending.length === 0 || (pastDeadline && done >= study.minSites)) {
      await this.closeRound(study, round, tally);
      return true;
    }
    const giveUpAt = round.startedAt.getTime() + GIVE_UP_AFTER_ROUND_TIMEOUTS * study.roundTimeoutMs;
    if (this.clock.now().getTime() >= giveUpAt) {
      const missing = tally.pending.map((job) => job.siteId).join(', ');
      throw new StudyError(
        `round ${round.index}: ${done} of the ${study.minSites} site(s) needed contributed within ` +
          `${GIVE_UP_AFTER_ROUND_TIMEOUTS} × roundTimeoutMs (${GIVE_UP_AFTER_ROUND_TIMEOUTS * study.roundTimeoutMs} ms); ` +
          `no result from site(s) ${missing}`,
      );
    }
    if (pastDeadline && !this.warned.has(round.id)) {
      this.warned.add(round.id);
      this.logger.warn(
        `study ${study.name} (${study.id}) round ${round.index}: the deadline passed with ${done} of the ` +
          `${study.minSites} sites needed; waiting for more (the study fails ` +
          `${GIVE_UP_AFTER_ROUND_TIMEOUTS} × roundTimeoutMs after the round opened)`,
      );
    }
    return false;
  }

  private async openRound(study: Study, index: number): Promise<StudyRound> {
    const participants: string[] = [];
    for (const siteId of study.siteIds) {
      if ((await this.siteStatus(siteId)) === 'active') participants.push(siteId);
    }
    const previous = index > 0 ? await this.rounds.findOneBy({ studyId: study.id, index: index - 1 }) : null;
    const now = this.clock.now();
    const round = this.rounds.create({
      id: this.random.uuid(),
      studyId: study.id,
      index,
      state: 'open',
      startedAt: now,
      deadline: new Date(now.getTime() + study.roundTimeoutMs),
      closedAt: null,
      participants,
      contributors: [],
      inputWeightsSha256: study.mode === 'fedavg' ? (previous?.outputWeightsSha256 ?? null) : null,
      inputEmaSha256: study.mode === 'fedavg' ? (previous?.outputEmaSha256 ?? null) : null,
      outputWeightsSha256: null,
      outputEmaSha256: null,
      contributions: {},
    });
    try {
      await this.rounds.insert(round as never);
      this.logger.log(
        `study ${study.name} (${study.id}): round ${index} opened for ${participants.length} site(s)`,
      );
      return round;
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      return this.rounds.findOneByOrFail({ studyId: study.id, index });
    }
  }

  /** Enqueues the missing jobs of the round, then sorts the participants into contributed / failed / pending. */
  private async tallyRound(study: Study, round: StudyRound): Promise<RoundTally> {
    const jobs = await this.jobs.list({ studyId: study.id, roundId: round.id, kind: 'train-round' });
    const bySite = new Map(jobs.map((job) => [job.siteId, job]));
    const tally: RoundTally = { contributions: new Map(), failed: new Map(), pending: [] };
    for (const siteId of round.participants) {
      let job = bySite.get(siteId);
      if (!job) {
        const enqueued = await this.enqueueTrainRound(study, round, siteId);
        if (typeof enqueued === 'string') {
          tally.failed.set(siteId, enqueued);
          continue;
        }
        job = enqueued;
      }
      if (job.state === 'done') {
        let contribution = contributionOf(job);
        if (typeof contribution !== 'string') {
          contribution = (await this.boundTrainSlices(study, siteId, contribution)) ?? contribution;
        }
        if (typeof contribution === 'string') {
          tally.failed.set(siteId, contribution);
          this.logRefusal(job, `study ${study.id} round ${round.index} site ${siteId}: ${contribution}`);
        } else tally.contributions.set(siteId, contribution);
      } else if (job.state === 'failed') {
        tally.failed.set(siteId, `${job.error?.code ?? 'failed'}: ${job.error?.message ?? ''}`.slice(0, 300));
      } else {
        tally.pending.push(job);
      }
    }
    return tally;
  }

  /**
   * The most training slices a site's result may claim (its FedAvg weight): the labelled training slices of its
   * last hello's data set summary when it reported them, else `maxTrainSlices`; plus the synthetic pool's slices
   * when the study mixes them in (a mix never holds more than real + pool). A refusal reason, or undefined.
   */
  private async boundTrainSlices(
    study: Study,
    siteId: string,
    c: RoundContribution,
  ): Promise<string | undefined> {
    const session = await this.sessions.findOne({
      where: { siteId },
      order: { helloAt: 'DESC', id: 'DESC' },
    });
    const reported = session?.dataset?.trainSlices;
    const known = typeof reported === 'number' && reported > 0;
    let limit = known ? reported : this.options.maxTrainSlices;
    const mixesPool =
      study.data && study.syntheticPoolSha256 && (study.data.both || study.data.syntheticShare > 0);
    if (mixesPool) limit += await this.sliceCountOf(study.syntheticPoolSha256!);
    if (c.trainSlices <= limit) return undefined;
    return (
      `refused: metrics.trainSlices ${c.trainSlices} exceeds ${limit}, ` +
      (known
        ? `the training slices the site reported in its hello`
        : 'the configured maximum (maxTrainSlices)') +
      (mixesPool ? ' plus the synthetic pool' : '')
    );
  }

  private async sliceCountOf(sha256: string): Promise<number> {
    const reader = await SliceStoreReader.open(this.blobs.store.pathOf(sha256)).catch((error: unknown) => {
      throw new StudyError(
        `the synthetic pool ${sha256} is not a readable slice store: ${(error as Error).message}`,
      );
    });
    try {
      return reader.count;
    } finally {
      await reader.close();
    }
  }

  /** Logs a refused result once per job (steps re-read everything and would repeat it). */
  private logRefusal(job: Job, message: string): void {
    if (this.refusalsLogged.has(job.id)) return;
    this.refusalsLogged.add(job.id);
    this.logger.warn(message);
  }

  /** The round's job for a site, or why it cannot have one (the site is no longer active). */
  private async enqueueTrainRound(study: Study, round: StudyRound, siteId: string): Promise<Job | string> {
    if ((await this.siteStatus(siteId)) !== 'active') return 'the site is no longer active';
    const inputs: JobInputRecord[] = [];
    let weights: WeightsPair | null = null;
    if (study.mode === 'fedavg' && round.inputWeightsSha256) {
      weights = { weights: round.inputWeightsSha256, ema: round.inputEmaSha256 };
    } else if (study.mode === 'local') {
      const own = await this.latestContribution(study.id, siteId, round.index);
      if (own) weights = { weights: own.weightsSha256, ema: own.emaSha256 };
    }
    if (weights) {
      inputs.push(await this.input('global-weights', weights.weights, 'global-weights'));
      if (weights.ema) inputs.push(await this.input('ema', weights.ema, 'global-weights'));
    }
    if (study.syntheticPoolSha256) {
      // the pool is a slice store, sent like the audit's candidate pool
      inputs.push(await this.input('synthetic-pool', study.syntheticPoolSha256, 'synthetic-pool'));
    }
    const payload = trainRoundPayloadSchema.parse({
      studyId: study.id,
      round: round.index,
      model: study.model,
      localSteps: study.localSteps,
      rounds: study.rounds,
      batchSize: study.batchSize,
      seed: study.seed,
      ...(study.maxSeconds !== null ? { maxSeconds: study.maxSeconds } : {}),
      ...(study.data ? { data: study.data } : {}),
    });
    return this.jobs.enqueue(siteId, 'train-round', payload as Record<string, JsonValue>, {
      inputs,
      studyId: study.id,
      roundId: round.id,
    });
  }

  private async closeRound(study: Study, round: StudyRound, tally: RoundTally): Promise<void> {
    for (const job of tally.pending) {
      await this.jobs.cancel(
        job.id,
        `round ${round.index} of study ${study.name} closed at its deadline without this site; ` +
          'it rejoins the next round',
      );
    }
    // participants' order, so that the average (and its bytes) do not depend on who finished first
    const contributors = round.participants.filter((siteId) => tally.contributions.has(siteId));
    const contributions = Object.fromEntries(contributors.map((s) => [s, tally.contributions.get(s)!]));
    let outputWeights: string | null = null;
    let outputEma: string | null = null;
    if (study.mode === 'fedavg') {
      outputWeights = await this.average(study, round, contributors, contributions, 'weights');
      if (contributors.every((siteId) => contributions[siteId]!.emaSha256)) {
        outputEma = await this.average(study, round, contributors, contributions, 'ema');
      } else if (contributors.some((siteId) => contributions[siteId]!.emaSha256)) {
        this.logger.warn(`study ${study.id} round ${round.index}: only some sites sent an EMA; none is kept`);
      }
    }
    const last = round.index + 1 >= study.rounds;
    const now = this.clock.now();
    let modelSha256: string | null = null;
    let samplingSiteIds: string[] | null = null;
    if (last && study.model.task === 'segmenter' && outputWeights) {
      modelSha256 = await this.recordSegmenter(study, outputWeights);
    }
    if (last && study.model.task === 'generator') {
      samplingSiteIds = [];
      for (const siteId of study.siteIds) {
        if ((await this.siteStatus(siteId)) !== 'active') continue;
        const hasWeights =
          study.mode === 'fedavg' ||
          contributions[siteId] !== undefined ||
          (await this.latestContribution(study.id, siteId, round.index)) !== undefined;
        if (hasWeights) samplingSiteIds.push(siteId);
      }
    }
    const nextState: StudyState = last ? (study.model.task === 'generator' ? 'sampling' : 'done') : 'running';
    const closed = await this.transactions.run(async (manager) => {
      const r = await manager.update(StudyRound, { id: round.id, state: 'open' }, {
        state: 'done',
        closedAt: now,
        contributors,
        contributions,
        outputWeightsSha256: outputWeights,
        outputEmaSha256: outputEma,
      } as never);
      if (r.affected !== 1) return false;
      await manager.update(Study, { id: study.id, state: 'running', currentRound: round.index }, {
        currentRound: round.index + 1,
        state: nextState,
        updatedAt: now,
        ...(samplingSiteIds ? { samplingSiteIds } : {}),
        ...(modelSha256 ? { modelSha256 } : {}),
        ...(nextState === 'done' ? { finishedAt: now } : {}),
      } as never);
      return true;
    });
    if (!closed) return;
    this.metrics.roundCompleted(study.id, study.mode, (now.getTime() - round.startedAt.getTime()) / 1000);
    this.logger.log(
      `study ${study.name} (${study.id}): round ${round.index} closed with ${contributors.length} of ` +
        `${round.participants.length} site(s)` +
        (outputWeights ? `, global weights ${outputWeights}` : ''),
    );
    const updated = await this.studies.findOneByOrFail({ id: study.id });
    this.events.emit('roundClosed', { study: updated, round: round.index });
    if (updated.state === 'done') this.events.emit('studyDone', { study: updated });
  }

  /**
   * FedAvg of the contributors' `role` outputs weighted by their trainSlices, in a worker thread (decoding and
   * hashing hundreds of MB would block the event loop); stored once as global weights.
   */
  private async average(
    study: Study,
    round: StudyRound,
    contributors: string[],
    contributions: Record<string, RoundContribution>,
    role: 'weights' | 'ema',
  ): Promise<string> {
    const inputs: Array<{ file: string; sampleCount: number; source: string }> = [];
    for (const siteId of contributors) {
      const c = contributions[siteId]!;
      const sha = role === 'weights' ? c.weightsSha256 : c.emaSha256!;
      const source = `site ${siteId} round ${round.index} ${role}`;
      if (!(await this.blobs.stat(sha))) {
        throw new StudyError(`${source}: blob ${sha} is not in the coordinator's store`);
      }
      inputs.push({ file: this.blobs.store.pathOf(sha), sampleCount: c.trainSlices, source });
    }
    const tmpDir = path.join(this.config.dataDir, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    const out = path.join(tmpDir, `fedavg-${study.id}-r${round.index}-${role}-${this.random.uuid()}.weights`);
    try {
      let sha256: string;
      try {
        ({ sha256 } = await fedAvgInWorker({
          inputs,
          provenance: { studyId: study.id, round: round.index, role },
          createdAt: round.startedAt.toISOString(), // a re-run after a restart writes the same bytes
          out,
        }));
      } catch (error) {
        if (!(error instanceof FedAvgWorkerError)) throw error;
        if (error.stage === 'decode') throw new StudyError(error.message);
        if (error.stage === 'average') {
          throw new StudyError(`round ${round.index}: averaging the ${role} failed: ${error.message}`);
        }
        throw error; // I/O or a crashed worker: the step is retried
      }
      const existing = await this.blobs.findBySha256(sha256);
      const recorded = existing.some(
        (b) =>
          b.siteId === null &&
          b.kind === 'global-weights' &&
          b.meta.studyId === study.id &&
          b.meta.round === round.index,
      );
      if (!recorded || !(await this.blobs.stat(sha256))) {
        await this.blobs.storeFile(out, {
          kind: 'global-weights',
          role,
          meta: { studyId: study.id, round: round.index, role },
        });
      }
      return sha256;
    } finally {
      await rm(out, { force: true });
      await rm(`${out}.partial`, { force: true });
    }
  }

  /** The final global weights of a segmenter study, recorded as a 'segmenter' blob (once; streamed, not read). */
  private async recordSegmenter(study: Study, sha256: string): Promise<string> {
    const existing = await this.blobs.findBySha256(sha256);
    if (!existing.some((b) => b.kind === 'segmenter' && b.meta.studyId === study.id)) {
      await this.blobs.storeFile(this.blobs.store.pathOf(sha256), {
        kind: 'segmenter',
        meta: { studyId: study.id },
      });
    }
    return sha256;
  }

  /**
   * Sampling: one sample job per site, each delivery pooled once; done when every site delivered or failed, or
   * at the sampling deadline (roundTimeoutMs after sampling started, i.e. after the last round closed), when the
   * jobs still pending are cancelled.
   */
  private async stepSampling(study: Study): Promise<boolean> {
    const siteIds = study.samplingSiteIds ?? [];
    const jobs = await this.jobs.list({ studyId: study.id, kind: 'sample' });
    const bySite = new Map(jobs.map((job) => [job.siteId, job]));
    const pending: Job[] = [];
    const failures: string[] = [];
    for (const siteId of siteIds) {
      let job = bySite.get(siteId);
      if (!job) {
        const enqueued = await this.enqueueSample(study, siteId);
        if (typeof enqueued === 'string') {
          failures.push(`site ${siteId}: ${enqueued}`);
          continue;
        }
        job = enqueued;
      }
      if (job.state === 'done') {
        const problem = await this.pooled(study, job);
        if (problem) {
          failures.push(`site ${siteId}: ${problem}`);
          this.logRefusal(job, `study ${study.id} sampling: site ${siteId}'s samples refused: ${problem}`);
        }
      } else if (job.state === 'failed') {
        failures.push(
          `site ${siteId}: ${job.error?.code ?? 'failed'}: ${job.error?.message ?? ''}`.slice(0, 300),
        );
      } else {
        pending.push(job);
      }
    }
    if (pending.length > 0) {
      const deadline = await this.samplingDeadline(study);
      if (this.clock.now().getTime() < deadline.getTime()) return false;
      for (const job of pending) {
        await this.jobs.cancel(
          job.id,
          `the sampling deadline of study ${study.name} (${deadline.toISOString()}) passed without this site's samples`,
        );
        failures.push(
          `site ${job.siteId}: no samples before the sampling deadline ${deadline.toISOString()}`,
        );
      }
      this.logger.warn(
        `study ${study.name} (${study.id}): the sampling deadline passed; cancelled the sample job(s) of ` +
          `site(s) ${pending.map((job) => job.siteId).join(', ')}`,
      );
    }
    const delivered = await this.pool.countBy({ studyId: study.id });
    if (delivered < study.minSites) {
      throw new StudyError(
        `sampling: ${delivered} site(s) delivered usable samples but the study needs minSites = ${study.minSites}` +
          (failures.length ? ` (${failures.join('; ')})` : ''),
      );
    }
    const now = this.clock.now();
    const r = await this.studies.update({ id: study.id, state: 'sampling' }, {
      state: 'done',
      finishedAt: now,
      updatedAt: now,
    } as never);
    if (r.affected === 1) {
      const updated = await this.studies.findOneByOrFail({ id: study.id });
      this.logger.log(`study ${study.name} (${study.id}) done: ${delivered} site(s) pooled samples`);
      this.events.emit('studyDone', { study: updated });
    }
    return false;
  }

  /** Sampling started when the last round closed (the same transaction moved the study to 'sampling'). */
  private async samplingDeadline(study: Study): Promise<Date> {
    const last = await this.rounds.findOneBy({ studyId: study.id, index: study.rounds - 1 });
    const started = last?.closedAt ?? study.updatedAt;
    return new Date(started.getTime() + study.roundTimeoutMs);
  }

  private async enqueueSample(study: Study, siteId: string): Promise<Job | string> {
    if ((await this.siteStatus(siteId)) !== 'active') return 'the site is no longer active';
    const final = await this.finalWeightsOf(study);
    const weights = study.mode === 'fedavg' ? final?.global : final?.bySite[siteId];
    if (!weights) return 'no final weights for this site';
    const inputs = [await this.input('weights', weights.weights, 'global-weights')];
    if (weights.ema) inputs.push(await this.input('ema', weights.ema, 'global-weights'));
    const payload = samplePayloadSchema.parse({
      studyId: study.id,
      model: study.model,
      n: study.samplesPerSite,
      seed: sampleSeed(study.seed, siteId),
      truncationPsi: study.truncationPsi,
      ddimSteps: study.ddimSteps,
    });
    return this.jobs.enqueue(siteId, 'sample', payload as Record<string, JsonValue>, {
      inputs,
      studyId: study.id,
    });
  }

  /** Records a finished sample job in the pool (once per study and site); a problem with its result, if any. */
  private async pooled(study: Study, job: Job): Promise<string | undefined> {
    const output = job.result?.outputs.find((o) => o.role === 'samples');
    const count = job.result?.metrics?.count;
    if (!output) return "the result has no 'samples' output";
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
      return 'the result has no metrics.count';
    }
    if (await this.pool.existsBy({ studyId: study.id, siteId: job.siteId })) return undefined;
    const n = (job.payload as { n: number }).n;
    const problem = await this.sampleStoreProblem(study, output.sha256, n, count);
    if (problem) return problem;
    try {
      await this.pool.insert({
        id: this.random.uuid(),
        studyId: study.id,
        siteId: job.siteId,
        jobId: job.id,
        sha256: output.sha256,
        size: output.size,
        count,
        generator: study.model.model,
        seed: (job.payload as { seed: number }).seed,
        round: study.rounds - 1,
        createdAt: this.clock.now(),
      });
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
    return undefined;
  }

  /**
   * Why a site's samples blob cannot be pooled: not a slice store, none or more slices than the job asked for,
   * another count than the site reported, another size than the model's input, other channels. Reads only the store's metadata.
   */
  private async sampleStoreProblem(
    study: Study,
    sha256: string,
    n: number,
    reportedCount: number,
  ): Promise<string | undefined> {
    let reader: SliceStoreReader;
    try {
      reader = await SliceStoreReader.open(this.blobs.store.pathOf(sha256));
    } catch (error) {
      return `the samples blob ${sha256} is not a readable slice store: ${(error as Error).message}`;
    }
    try {
      const { count, size, channels } = reader.meta;
      // The site's memorization pre-check may withhold some of the n drawn samples: fewer is fine, more is not.
      if (count < 1 || count > n)
        return `the samples store holds ${count} slices, the job asked for n = ${n}`;
      if (count !== reportedCount) {
        return `the samples store holds ${count} slices but the result's metrics.count says ${reportedCount}`;
      }
      const expected = await this.inputSizeOf(study);
      if (size !== expected) return `the samples are ${size}² slices, the model makes ${expected}²`;
      if (channels.length !== SLICE_CHANNELS.length || channels.some((ch, i) => ch !== SLICE_CHANNELS[i])) {
        return `the samples have channels [${channels.join(', ')}], expected [${SLICE_CHANNELS.join(', ')}]`;
      }
      return undefined;
    } finally {
      await reader.close();
    }
  }

  private async inputSizeOf(study: Study): Promise<number> {
    try {
      return modelInputSize(await studyModelArchitecture(study.model));
    } catch (error) {
      throw new StudyError(`the study's model has no known input size: ${(error as Error).message}`);
    }
  }

  // ------------------------------------------------------------------------------------------ helpers

  private async fail(study: Study, message: string): Promise<void> {
    this.logger.error(`study ${study.name} (${study.id}) failed: ${message}`);
    const ended = await this.end(study, 'failed', message);
    if (ended) this.events.emit('studyFailed', { study: ended });
  }

  /** live → failed | cancelled, and every unfinished job of the study cancelled. The study, or undefined if it
   * was no longer live. */
  private async end(
    study: Study,
    state: 'failed' | 'cancelled',
    message: string,
  ): Promise<Study | undefined> {
    const now = this.clock.now();
    const r = await this.studies.update({ id: study.id, state: In(LIVE_STATES) }, {
      state,
      error: message.slice(0, 4000),
      finishedAt: now,
      updatedAt: now,
    } as never);
    if (r.affected !== 1) return undefined;
    // The state is stored first: cancelled jobs of a still-live study would read as site failures. A crash (or an
    // error) before every job is cancelled leaves jobs that cancelOrphanJobs() ends at the next start-up.
    const unfinished = (
      await this.jobs.list({ studyId: study.id, state: [...UNFINISHED_JOB_STATES] })
    ).filter((job) => (STUDY_JOB_KINDS as readonly string[]).includes(job.kind));
    for (const job of unfinished) {
      try {
        await this.jobs.cancel(job.id, `study ${study.name} ${state}: ${message}`);
      } catch (error) {
        this.logger.error(
          `study ${study.id} ${state}: cancelling job ${job.id} failed (retried at start-up): ` +
            (error as Error).message,
        );
      }
    }
    return this.studies.findOneByOrFail({ id: study.id });
  }

  /** The site's most recent contribution in a round before `beforeRound` (local mode's own weights). */
  private async latestContribution(
    studyId: string,
    siteId: string,
    beforeRound: number,
  ): Promise<RoundContribution | undefined> {
    const done = await this.rounds.find({ where: { studyId, state: 'done' }, order: { index: 'DESC' } });
    return done.filter((r) => r.index < beforeRound).find((r) => r.contributions[siteId])?.contributions[
      siteId
    ];
  }

  private async input(role: string, sha256: string, kind: JobInputRecord['kind']): Promise<JobInputRecord> {
    const ref = await this.blobs.stat(sha256);
    if (!ref) throw new StudyError(`the ${role} input ${sha256} is not in the coordinator's store`);
    return { role, sha256, size: ref.size, kind };
  }

  private async siteStatus(siteId: string): Promise<string> {
    try {
      return (await this.sites.get(siteId)).status;
    } catch {
      return 'missing';
    }
  }

  private async refreshGauge(): Promise<void> {
    const rows = await this.studies
      .createQueryBuilder('s')
      .select('s.state', 'state')
      .addSelect('COUNT(*)', 'n')
      .groupBy('s.state')
      .getRawMany<{ state: StudyState; n: string | number }>();
    const counts: Partial<Record<StudyState, number>> = {};
    for (const row of rows) if (STUDY_STATES.includes(row.state)) counts[row.state] = Number(row.n);
    this.metrics.setStudyCounts(counts);
  }
}

/** A problem that ends the study (as failed) rather than one step. */
class StudyError extends Error {}

/** What a finished train-round job contributes, or why it cannot be used. */
function contributionOf(job: Job): RoundContribution | string {
  const outputs = job.result?.outputs ?? [];
  const weights = outputs.find((o) => o.role === 'weights');
  const ema = outputs.find((o) => o.role === 'ema');
  const metrics = job.result?.metrics ?? {};
  const trainSlices = metrics.trainSlices;
  if (!weights) return "the result has no 'weights' output";
  if (typeof trainSlices !== 'number' || !Number.isFinite(trainSlices) || trainSlices <= 0) {
    return 'the result has no positive metrics.trainSlices (the FedAvg weight)';
  }
  const num = (v: number | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    jobId: job.id,
    weightsSha256: weights.sha256,
    emaSha256: ema?.sha256 ?? null,
    trainSlices,
    steps: num(metrics.steps),
    finalLoss: num(metrics.finalLoss),
    seconds: num(metrics.seconds),
  };
}
