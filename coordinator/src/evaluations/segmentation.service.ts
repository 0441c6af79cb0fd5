import path from 'node:path';
import { mkdir, rm } from 'node:fs/promises';
import {
  BadRequestException,
  Inject,
  Injectable,
  Logger,
  NotFoundException,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { trainSegmenter } from '@fedsynth/common/ml/jobs/index';
import { Counter, Gauge, Histogram } from 'prom-client';
import { In, type Repository } from 'typeorm';
import { BlobsService } from '../blobs/blobs.service.js';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { SegmenterRun } from './evaluation.entities.js';
import { mergeSliceStores } from './pool-merge.js';
import { StudyGateway } from './study-gateway.js';

export interface TrainOnPoolOptions {
  model: 'unet' | 'swin';
  profile: 'paper' | 'cpu' | 'tiny';
  steps: number;
  batch?: number;
}

/** Why a run that was training when the coordinator stopped is failed at the next start (it is not resumed). */
export const INTERRUPTED_ERROR =
  'interrupted: the coordinator restarted while this run was training; start a new run';

/** Progress lines at most this often per run (a tiny run makes hundreds of steps a second). */
const LOG_EVERY_MS = 10_000;

/** Training options the service passes to trainSegmenter besides the run's own (tests shrink the workers). */
export const SEGMENTATION_OPTIONS = Symbol.for('fedsynth.evaluations.segmentation-options');
export interface SegmentationOptions {
  workers: number;
  seed: number;
}
export const DEFAULT_SEGMENTATION_OPTIONS: SegmentationOptions = { workers: 2, seed: 1 };

/**
 * Central segmenter training on a study's synthetic pool: the pool's sample stores merged into one store, then
 * common's trainSegmenter (worker threads; the event loop stays free) in `<dataDir>/segmentation/<run>`. One run
 * at a time: runs wait as `queued` rows and are picked oldest first. A coordinator restart fails the run that was
 * training (INTERRUPTED_ERROR) and goes on with the queued ones.
 */
@Injectable()
export class SegmentationService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(SegmentationService.name);
  private current?: { id: string; abort: AbortController; done: Promise<void> };
  private pumping = false;
  private stopped = false;
  private readonly listeners = new Set<(run: SegmenterRun) => void>();
  private readonly stepGauge: Gauge<'run'>;
  private readonly stepsTotal: Counter<'model'>;
  private readonly seconds: Histogram<'model' | 'outcome'>;

  constructor(
    @InjectRepository(SegmenterRun) private readonly runs: Repository<SegmenterRun>,
    private readonly blobs: BlobsService,
    private readonly studies: StudyGateway,
    private readonly clock: Clock,
    private readonly random: RandomSource,
    metrics: MetricsService,
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    @Inject(SEGMENTATION_OPTIONS) private readonly options: SegmentationOptions,
  ) {
    this.stepGauge = new Gauge({
      name: 'fedsynth_segmenter_training_step',
      help: 'Step reached by a central segmenter training run, by run id.',
      labelNames: ['run'] as const,
      registers: [metrics.registry],
    });
    this.stepsTotal = new Counter({
      name: 'fedsynth_segmenter_training_steps_total',
      help: 'Central segmenter training steps done, by model.',
      labelNames: ['model'] as const,
      registers: [metrics.registry],
    });
    this.seconds = new Histogram({
      name: 'fedsynth_segmenter_training_seconds',
      help: 'Duration of central segmenter training runs, by model and outcome.',
      labelNames: ['model', 'outcome'] as const,
      buckets: [1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600],
      registers: [metrics.registry],
    });
  }

  async onApplicationBootstrap(): Promise<void> {
    const interrupted = await this.runs.find({ where: { state: 'training' } });
    for (const run of interrupted) {
      await this.finish(run, { state: 'failed', error: INTERRUPTED_ERROR });
      this.logger.warn(`segmenter run ${run.id} was training when the coordinator stopped: failed`);
    }
    this.pump();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    const current = this.current;
    if (current) {
      current.abort.abort();
      await current.done.catch(() => undefined);
    }
  }

  /** where runs and pools are prepared */
  get workDir(): string {
    return path.join(this.config.dataDir, 'segmentation');
  }

  /** Queues a central training of `options.model` on the study's pool; returns the queued run. */
  async trainOnPool(studyId: string, options: TrainOnPoolOptions): Promise<SegmenterRun> {
    if (!Number.isInteger(options.steps) || options.steps < 1) throw new BadRequestException('steps ≥ 1');
    const batch = options.batch ?? 8;
    if (!Number.isInteger(batch) || batch < 1) throw new BadRequestException('batch ≥ 1');
    const samples = await this.studies.poolSamples(studyId);
    if (samples.length === 0) throw new BadRequestException(`study ${studyId} has no pooled samples`);
    const run = this.runs.create({
      id: this.random.uuid(),
      studyId,
      model: options.model,
      profile: options.profile,
      steps: options.steps,
      batchSize: batch,
      trainedOn: 'synthetic',
      state: 'queued',
      poolSha256: null,
      poolSlices: null,
      weightsSha256: null,
      finalLoss: null,
      seconds: null,
      error: null,
      createdAt: this.clock.now(),
      startedAt: null,
      finishedAt: null,
    });
    await this.runs.insert(run);
    this.pump();
    return run;
  }

  async get(id: string): Promise<SegmenterRun> {
    const run = await this.runs.findOneBy({ id });
    if (!run) throw new NotFoundException(`no segmenter run ${id}`);
    return run;
  }

  list(studyId?: string): Promise<SegmenterRun[]> {
    return this.runs.find({
      where: studyId ? { studyId } : {},
      order: { createdAt: 'ASC', id: 'ASC' },
    });
  }

  /**
   * Merges the study's pooled sample stores into one slice store in `dir` (default: a folder of its own under the
   * data dir) and stores it as a blob (kind 'synthetic-pool'): the pool FedAvg 'both' and mixing studies send to
   * the sites.
   */
  async mergePool(
    studyId: string,
    dir = path.join(this.config.dataDir, 'segmentation', `pool-${this.random.uuid()}`),
  ): Promise<{ file: string; sha256: string; size: number; slices: number; sources: number }> {
    const samples = await this.studies.poolSamples(studyId);
    if (samples.length === 0) throw new BadRequestException(`study ${studyId} has no pooled samples`);
    await mkdir(dir, { recursive: true });
    const pool = await mergeSliceStores(
      samples.map((s) => ({ file: this.blobs.store.pathOf(s.sha256), name: s.siteId })),
      path.join(dir, 'pool.fss'),
    );
    const blob = await this.blobs.storeFile(pool.file, {
      kind: 'synthetic-pool',
      meta: { studyId, slices: pool.slices, sources: samples.length },
    });
    return {
      file: pool.file,
      sha256: blob.sha256,
      size: blob.size,
      slices: pool.slices,
      sources: samples.length,
    };
  }

  /** Called with the run each time one ends (done or failed). */
  onFinished(listener: (run: SegmenterRun) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves when the run is done or failed (polls the row; for callers that wait, e.g. tests and the CLI). */
  async waitFor(id: string, pollMs = 200): Promise<SegmenterRun> {
    for (;;) {
      const run = await this.get(id);
      if (run.state === 'done' || run.state === 'failed') return run;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Starts the oldest queued run when none is training. */
  private pump(): void {
    if (this.pumping || this.current || this.stopped) return;
    this.pumping = true;
    void (async () => {
      try {
        const [next] = await this.runs.find({
          where: { state: 'queued' },
          order: { createdAt: 'ASC', id: 'ASC' },
          take: 1,
        });
        if (!next || this.stopped) return;
        const started = await this.runs.update(
          { id: next.id, state: 'queued' },
          { state: 'training', startedAt: this.clock.now() },
        );
        if (started.affected !== 1) return;
        const abort = new AbortController();
        const done = this.execute(Object.assign(next, { state: 'training' }), abort.signal);
        this.current = { id: next.id, abort, done };
        void done.finally(() => {
          this.current = undefined;
          this.pump();
        });
      } catch (error) {
        this.logger.error(`segmenter queue: ${(error as Error).message}`);
      } finally {
        this.pumping = false;
      }
    })();
  }

  private async execute(run: SegmenterRun, signal: AbortSignal): Promise<void> {
    const dir = path.join(this.config.dataDir, 'segmentation', run.id);
    const started = Date.now();
    try {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      const pool = await this.mergePool(run.studyId, dir);
      await this.runs.update({ id: run.id }, { poolSha256: pool.sha256, poolSlices: pool.slices });
      this.logger.log(
        `segmenter run ${run.id}: ${run.model}/${run.profile}, ${run.steps} steps on the pool of study ` +
          `${run.studyId} (${pool.slices} slices from ${pool.sources} sample stores)`,
      );
      let lastLog = 0;
      let lastStep = 0;
      const { card, dir: modelDir } = await trainSegmenter({
        model: run.model,
        profile: run.profile,
        data: pool.file,
        out: path.join(dir, 'model'),
        steps: run.steps,
        batchSize: run.batchSize,
        workers: this.options.workers,
        seed: this.options.seed,
        checkpointEvery: Math.max(1, Math.min(run.steps, 500)),
        signal,
        onProgress: (p) => {
          this.stepGauge.set({ run: run.id }, p.step);
          this.stepsTotal.inc({ model: run.model }, Math.max(0, p.step - lastStep));
          lastStep = p.step;
          const now = Date.now();
          if (now - lastLog >= LOG_EVERY_MS || p.step === p.steps) {
            lastLog = now;
            this.logger.log(
              `segmenter run ${run.id}: step ${p.step}/${p.steps}, loss ${p.loss.toFixed(4)}, ` +
                `${p.imagesPerSecond.toFixed(1)} images/s`,
            );
          }
        },
        log: (line) => this.logger.debug(`segmenter run ${run.id}: ${line}`),
      });
      if (card.cancelled) throw new Error(INTERRUPTED_ERROR);
      const weights = await this.blobs.storeFile(path.join(modelDir, 'model.weights'), {
        kind: 'segmenter',
        meta: {
          studyId: run.studyId,
          model: run.model,
          profile: run.profile,
          trainedOn: 'synthetic',
          run: run.id,
        },
      });
      await this.finish(run, {
        state: 'done',
        weightsSha256: weights.sha256,
        finalLoss: card.finalLoss,
        seconds: card.trainingSeconds,
      });
      this.seconds.observe({ model: run.model, outcome: 'done' }, (Date.now() - started) / 1000);
      this.logger.log(
        `segmenter run ${run.id} done: final loss ${card.finalLoss.toFixed(4)}, ${card.trainingSeconds.toFixed(1)} s`,
      );
    } catch (error) {
      const message = (error as Error).message || String(error);
      this.seconds.observe({ model: run.model, outcome: 'failed' }, (Date.now() - started) / 1000);
      // Stopping the coordinator aborts the run: leave it 'training' so the next start records it as interrupted.
      if (this.stopped) return;
      this.logger.error(`segmenter run ${run.id} failed: ${message}`);
      await this.finish(run, { state: 'failed', error: message.slice(0, 4000) });
    } finally {
      this.stepGauge.remove({ run: run.id });
      // The merged pool and the weights are blobs now; checkpoints are not worth keeping.
      await rm(path.join(dir, 'model', 'checkpoints'), { recursive: true, force: true }).catch(
        () => undefined,
      );
    }
  }

  private async finish(run: SegmenterRun, patch: Partial<SegmenterRun>): Promise<void> {
    const finishedAt = this.clock.now();
    await this.runs.update({ id: run.id, state: In(['queued', 'training']) }, {
      ...patch,
      finishedAt,
    } as never);
    const updated = await this.get(run.id);
    for (const listener of this.listeners) listener(updated);
  }
}
