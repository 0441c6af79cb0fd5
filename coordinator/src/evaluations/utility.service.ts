import {
  BadRequestException,
  ConflictException,
  Injectable,
  Logger,
  NotFoundException,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { InjectRepository } from '@nestjs/typeorm';
import { In, type Repository } from 'typeorm';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { IntervalScheduler } from '../jobs/interval-scheduler.js';
import { SitesService } from '../sites/sites.service.js';
import {
  Evaluation,
  type TrainedOn,
  type UtilityArm,
  type UtilityParams,
  UtilityRun,
} from './evaluation.entities.js';
import { EvaluationsService } from './evaluations.service.js';
import { SegmentationService } from './segmentation.service.js';
import { StudyGateway } from './study-gateway.js';
import { buildRunReport, type UtilityReport } from './utility-report.js';

/** How often running comparisons look at their studies (which report no events to this module). */
const ADVANCE_EVERY_MS = 10_000;

/**
 * The whole comparison for a generator study and a segmenter: central training on the pool ('synthetic'), FedAvg
 * studies on real slices ('real'), on real + pool ('both') and at fixed real:synthetic shares ('mix:<s>'), each
 * evaluated at every site. A persisted state machine per arm: `advance` looks at what each arm waits for and takes
 * the next step; it runs on events, on an interval and at start, so a restarted coordinator carries on.
 */
@Injectable()
export class UtilityService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(UtilityService.name);
  private readonly cleanups: Array<() => void> = [];
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    @InjectRepository(UtilityRun) private readonly runs: Repository<UtilityRun>,
    @InjectRepository(Evaluation) private readonly evaluationRows: Repository<Evaluation>,
    private readonly segmentation: SegmentationService,
    private readonly evaluations: EvaluationsService,
    private readonly studies: StudyGateway,
    private readonly sites: SitesService,
    private readonly scheduler: IntervalScheduler,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  onApplicationBootstrap(): void {
    const kick = () => void this.advanceAll().catch(() => undefined);
    this.cleanups.push(this.segmentation.onFinished(kick));
    this.cleanups.push(this.evaluations.events.on('finished', kick));
    this.cleanups.push(this.scheduler.every(ADVANCE_EVERY_MS, () => this.advanceAll().then(() => undefined)));
    kick();
  }

  onModuleDestroy(): void {
    for (const c of this.cleanups.splice(0)) c();
  }

  async start(studyId: string, params: UtilityParams, createdBy: string | null = null): Promise<UtilityRun> {
    if ((await this.studies.poolSamples(studyId)).length === 0) {
      throw new BadRequestException(`study ${studyId} has no pooled samples to train on`);
    }
    const shares = [...new Set(params.mixShares)].sort((a, b) => a - b);
    const arms: UtilityArm[] = (['synthetic', 'real', 'both'] as TrainedOn[])
      .concat(shares.map((s) => `mix:${s}` as TrainedOn))
      .map((trainedOn) => ({ trainedOn, state: 'pending' }));
    const now = this.clock.now();
    const run = this.runs.create({
      id: this.random.uuid(),
      studyId,
      params: { ...params, mixShares: shares },
      state: 'running',
      poolSha256: null,
      arms,
      error: null,
      createdBy,
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
    });
    await this.runs.insert(run as never);
    this.logger.log(
      `utility run ${run.id} for study ${studyId}: arms ${arms.map((a) => a.trainedOn).join(', ')}`,
    );
    void this.advance(run.id).catch((error: unknown) =>
      this.logger.error(`utility run ${run.id}: ${(error as Error).message}`),
    );
    return run;
  }

  async get(id: string): Promise<UtilityRun> {
    const run = await this.runs.findOneBy({ id });
    if (!run) throw new NotFoundException(`no utility run ${id}`);
    return run;
  }

  /** The comparison table of every utility run of the study (numbers from the stored evaluations). */
  async report(studyId: string): Promise<UtilityReport> {
    const runs = await this.runs.find({ where: { studyId }, order: { createdAt: 'ASC', id: 'ASC' } });
    const ids = runs.flatMap((r) => r.arms.map((a) => a.evaluationId).filter((x): x is string => !!x));
    const rows = ids.length ? await this.evaluationRows.find({ where: { id: In(ids) } }) : [];
    const byId = new Map(rows.map((e) => [e.id, e]));
    return { studyId, runs: runs.map((r) => buildRunReport(r, byId)) };
  }

  async advanceAll(): Promise<void> {
    const running = await this.runs.find({ where: { state: 'running' } });
    for (const run of running) await this.advance(run.id);
  }

  /** Takes every step the run can take now (idempotent; serialized). */
  advance(id: string): Promise<UtilityRun> {
    const next = this.chain.then(
      () => this.step(id),
      () => this.step(id),
    );
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async step(id: string): Promise<UtilityRun> {
    const run = await this.get(id);
    if (run.state !== 'running') return run;
    const save = async () => {
      run.updatedAt = this.clock.now();
      await this.runs.update({ id, state: 'running' }, {
        arms: run.arms,
        poolSha256: run.poolSha256,
        state: run.state,
        error: run.error,
        updatedAt: run.updatedAt,
        finishedAt: run.finishedAt,
      } as never);
    };
    try {
      if (!run.poolSha256 && run.arms.some((a) => a.trainedOn !== 'synthetic' && a.trainedOn !== 'real')) {
        const dir = path.join(this.segmentationDir(), `utility-${run.id}`);
        const pool = await this.segmentation.mergePool(run.studyId, dir);
        await rm(dir, { recursive: true, force: true });
        run.poolSha256 = pool.sha256;
        await save();
      }
    } catch (error) {
      run.state = 'failed';
      run.error = `merging the pool failed: ${(error as Error).message}`;
      run.finishedAt = this.clock.now();
      await save();
      return run;
    }
    for (const arm of run.arms) {
      try {
        if (await this.stepArm(run, arm)) await save();
      } catch (error) {
        arm.state = 'failed';
        arm.error = (error as Error).message.slice(0, 2000);
        await save();
      }
    }
    if (run.arms.every((a) => a.state === 'done' || a.state === 'failed')) {
      const ok = run.arms.some((a) => a.state === 'done');
      run.state = ok ? 'done' : 'failed';
      run.error = ok ? null : 'every arm failed';
      run.finishedAt = this.clock.now();
      await save();
      this.logger.log(`utility run ${run.id} ${run.state}`);
    }
    return run;
  }

  /** One arm's next step; true when it changed. */
  private async stepArm(run: UtilityRun, arm: UtilityArm): Promise<boolean> {
    const p = run.params;
    const label = `${p.model}/${arm.trainedOn}`;
    switch (arm.state) {
      case 'pending': {
        if (arm.trainedOn === 'synthetic') {
          const seg = await this.segmentation.trainOnPool(run.studyId, {
            model: p.model,
            profile: p.profile,
            steps: p.steps,
            batch: p.batchSize,
          });
          arm.segmenterRunId = seg.id;
        } else {
          const siteIds = (await this.sites.list()).filter((s) => s.status === 'active').map((s) => s.id);
          if (siteIds.length === 0) throw new ConflictException('no active site to train on');
          const data =
            arm.trainedOn === 'real'
              ? undefined
              : arm.trainedOn === 'both'
                ? { both: true }
                : {
                    syntheticShare: Number(arm.trainedOn.slice('mix:'.length)),
                    ...(p.mixTotalSlices ? { totalSlices: p.mixTotalSlices } : {}),
                  };
          arm.segmenterStudyId = await this.studies.createSegmenterStudy({
            name: `utility ${run.studyId.slice(0, 8)} ${label}`.slice(0, 128),
            model: p.model,
            profile: p.profile,
            rounds: p.rounds,
            localSteps: p.localSteps,
            batchSize: p.batchSize,
            siteIds,
            ...(data ? { data, syntheticPoolSha256: run.poolSha256! } : {}),
            createdBy: run.createdBy,
          });
        }
        arm.state = 'training';
        return true;
      }
      case 'training': {
        let weights: string | undefined;
        let studyId: string;
        if (arm.segmenterRunId) {
          const seg = await this.segmentation.get(arm.segmenterRunId);
          if (seg.state === 'failed') throw new Error(`central training failed: ${seg.error ?? ''}`);
          if (seg.state !== 'done') return false;
          weights = seg.weightsSha256!;
          studyId = run.studyId;
        } else {
          const outcome = await this.studies.outcome(arm.segmenterStudyId!);
          if (outcome.state === 'failed') throw new Error(outcome.error);
          if (outcome.state !== 'done') return false;
          weights = outcome.weightsSha256;
          studyId = arm.segmenterStudyId!;
        }
        arm.weightsSha256 = weights;
        const evaluation = await this.evaluations.evaluate(
          arm.segmenterRunId ? { segmenterRunId: arm.segmenterRunId } : { weightsSha256: weights, studyId },
          label,
        );
        arm.evaluationId = evaluation.id;
        arm.state = 'evaluating';
        return true;
      }
      case 'evaluating': {
        const evaluation = await this.evaluations.get(arm.evaluationId!);
        if (evaluation.state === 'running') return false;
        if (evaluation.state === 'failed') throw new Error(`evaluation failed: ${evaluation.error ?? ''}`);
        arm.state = 'done';
        return true;
      }
      default:
        return false;
    }
  }

  private segmentationDir(): string {
    return this.segmentation.workDir;
  }
}
