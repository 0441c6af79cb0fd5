// The main-thread side of training: startTraining spawns the data-parallel workers, checks that their replicas
// start identical, hands them the shared gradient exchange, then only supervises: progress events, checkpoint
// files, cancellation, and turning any worker failure (an exception, process.exit, a stall) into one rejection
// that names the worker and the step, after every worker thread has ended.
import { EventEmitter } from 'node:events';
import { Worker, type WorkerOptions } from 'node:worker_threads';

import {
  createControlBuffer,
  exchangeBufferBytes,
  requestAbort,
  requestCancel,
  STEP_FINISHED,
  STEP_INITIALISING,
  workerStep,
} from './allreduce.js';
import { CheckpointError, CheckpointStore, type LoadedCheckpoint } from './checkpoint.js';
import { validateOptimizerSpec } from './optimizers.js';
import { ProgressTracker, type TrainingProgress } from './progress.js';
import type {
  BackendSummary,
  MainToWorker,
  TensorCounts,
  WorkerInit,
  WorkerTiming,
  WorkerToMain,
} from './protocol.js';
import { trainingSpecHash, validateTrainingSpec, type TrainingSpec } from './spec.js';

/** A spawned worker, as the run sees it (so tests can substitute the spawning). */
export interface TrainingWorkerHandle {
  post(message: MainToWorker): void;
  /** Resolves once the thread has ended. */
  terminate(): Promise<void>;
  onMessage(listener: (message: WorkerToMain) => void): void;
  onError(listener: (error: Error) => void): void;
  onExit(listener: (code: number) => void): void;
}

export interface WorkerFactory {
  spawn(init: WorkerInit): TrainingWorkerHandle;
}

/** Spawns real worker threads running training-worker.js (compiled beside this file). */
export class ThreadWorkerFactory implements WorkerFactory {
  constructor(
    private readonly options: {
      /** The worker entry (default: training-worker.js beside this module). */
      entry?: URL;
      /** The workers' process.env (default: a copy of the main thread's). */
      env?: NodeJS.ProcessEnv;
      resourceLimits?: WorkerOptions['resourceLimits'];
    } = {},
  ) {}

  spawn(init: WorkerInit): TrainingWorkerHandle {
    const worker = new Worker(this.options.entry ?? new URL('./training-worker.js', import.meta.url), {
      workerData: init,
      name: `fedsynth-training-${init.workerIndex}`,
      ...(this.options.env && { env: this.options.env }),
      ...(this.options.resourceLimits && { resourceLimits: this.options.resourceLimits }),
    });
    return {
      post: (message) => worker.postMessage(message),
      terminate: async () => {
        await worker.terminate();
      },
      onMessage: (listener) => worker.on('message', listener),
      onError: (listener) => worker.on('error', listener),
      onExit: (listener) => worker.on('exit', listener),
    };
  }
}

export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface StartTrainingOptions {
  onProgress?: (progress: TrainingProgress) => void;
  /** Aborting it cancels the run (like cancel()). */
  signal?: AbortSignal;
  /** Continue from the newest valid checkpoint in spec.checkpointDir (start at step 0 when there is none). */
  resume?: boolean;
  /**
   * Start from these weights (a fedsynth-weights blob of the task's architecture) instead of the task's random
   * init, with a fresh optimizer: a federated round continuing the global model. Ignored when resuming from a
   * checkpoint (which holds the weights reached). A blob of another architecture fails the run.
   */
  initialWeights?: Uint8Array;
  /** The EMA shadows to start from (tasks that keep an EMA); default: a copy of initialWeights. */
  initialEma?: Uint8Array;
  /** Write a checkpoint of the state reached when the run is cancelled (default true). */
  checkpointOnCancel?: boolean;
  /** Fail the run when the workers are not all initialised (backend, task, data) within this (default: never). */
  startupTimeoutMs?: number;
  /** After start, fail the run when no worker reports anything for this long (default: never; a step and a
   * checkpoint's encoding must fit in it). */
  stallTimeoutMs?: number;
  /** How long workers get to end on their own after the run finished or failed before being terminated. */
  shutdownGraceMs?: number;
  /** Backend choice, resume notes, worker log lines. Default: stderr. */
  logger?: (message: string) => void;
  workerFactory?: WorkerFactory;
  clock?: Clock;
  checkpointStore?: CheckpointStore;
}

export interface WorkerReport {
  worker: number;
  weightsChecksum: string;
  tensors: TensorCounts;
  timing: WorkerTiming;
}

export interface TrainingResult {
  /** Steps completed (of the whole job). */
  steps: number;
  /** True when the run was cancelled before spec.steps. */
  cancelled: boolean;
  finalLoss: number;
  /** Mean loss of every completed step, including steps before a resume. */
  losses: number[];
  /** The final weights (fedsynth-weights blob). */
  weightsBlob: Buffer;
  /** The optimizer state: one optimizer's (single-phase tasks) or every phase's and the task's buffers. */
  optimizerBlob: Buffer;
  /** The EMA shadows as their own fedsynth-weights blob (architecture and names per the task's EmaSpec). */
  emaWeightsBlob?: Buffer;
  /** JSON of the newest checkpoint written (undefined when none was written). */
  checkpointPath: string | undefined;
  /** This session's wall time. */
  elapsedMs: number;
  /** Wall time over all sessions of the job (from the checkpoints). */
  totalElapsedMs: number;
  /** The step this session started from when it resumed. */
  resumedFromStep: number | undefined;
  backend: BackendSummary;
  architecture: { name: string; config: Record<string, unknown> };
  workers: WorkerReport[];
}

export interface CheckpointWritten {
  step: number;
  path: string;
  reason: 'interval' | 'final';
}

export interface TrainingRunEvents {
  progress: [TrainingProgress];
  checkpoint: [CheckpointWritten];
  log: [string];
}

/** Why a run failed: names the worker (undefined for the main thread's own failures) and the step. */
export class TrainingWorkerError extends Error {
  constructor(
    message: string,
    readonly worker: number | undefined,
    /** Step index being computed; -1 during initialisation; undefined when unknown. */
    readonly step: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TrainingWorkerError';
  }
}

function describeStep(step: number | undefined): string {
  if (step === undefined || step === STEP_FINISHED) return '';
  return step === STEP_INITIALISING ? ' during initialisation' : ` at step ${step}`;
}

interface Slot {
  handle: TrainingWorkerHandle;
  exited: Promise<void>;
  hasExited: boolean;
  ready?: Extract<WorkerToMain, { type: 'ready' }>;
  finished?: Extract<WorkerToMain, { type: 'finished' }>;
}

// Ranks failures so the root cause wins over its consequences (peers stopping, threads ending).
const PRIORITY_REPORTED = 3;
const PRIORITY_MAIN = 2;
const PRIORITY_EXIT = 1;

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A running training job. Events: 'progress', 'checkpoint', 'log'. */
export class TrainingRun extends EventEmitter<TrainingRunEvents> {
  /** Resolves with the result (also when cancelled: result.cancelled), rejects with a TrainingWorkerError. */
  readonly done: Promise<TrainingResult>;

  private readonly control: Int32Array;
  private readonly clock: Clock;
  private readonly factory: WorkerFactory;
  private readonly logger: (message: string) => void;
  private readonly store: CheckpointStore;
  private readonly slots: Slot[] = [];
  private failure: { error: TrainingWorkerError; priority: number } | undefined;
  private readonly failed = deferred<never>();
  private shuttingDown = false;
  private settled = false;
  private watchdog: unknown;
  private started = false;
  private writes: Promise<void> = Promise.resolve();
  private lastSaved: { step: number; path: string } | undefined;

  constructor(
    private readonly spec: TrainingSpec<object>,
    private readonly options: StartTrainingOptions = {},
  ) {
    super();
    validateTrainingSpec(spec);
    if (spec.optimizer) validateOptimizerSpec(spec.optimizer);
    this.control = new Int32Array(createControlBuffer(spec.workers));
    this.clock = options.clock ?? systemClock;
    this.factory = options.workerFactory ?? new ThreadWorkerFactory();
    this.logger = options.logger ?? ((message) => process.stderr.write(`fedsynth training: ${message}\n`));
    this.store = options.checkpointStore ?? new CheckpointStore(spec.checkpointDir, { logger: this.logger });
    this.failed.promise.catch(() => undefined);
    if (options.onProgress) this.on('progress', options.onProgress);
    const onAbort = () => this.cancel();
    if (options.signal?.aborted) this.cancel();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    this.done = this.run().finally(() => {
      this.settled = true;
      options.signal?.removeEventListener('abort', onAbort);
    });
  }

  /** Stops the run after the step in progress (within one step); `done` then resolves with cancelled: true. */
  cancel(): void {
    if (this.settled) return;
    requestCancel(this.control);
  }

  private log(message: string): void {
    this.logger(message);
    this.notify('log', message);
  }

  /** Emits to the caller's listeners; a listener that throws fails the run instead of the message handler. */
  private notify<K extends keyof TrainingRunEvents>(event: K, ...args: TrainingRunEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: TrainingRunEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      this.fail(
        new TrainingWorkerError(
          `a '${event}' listener threw: ${(error as Error).message}`,
          undefined,
          undefined,
          {
            cause: error,
          },
        ),
        PRIORITY_MAIN,
      );
    }
  }

  private fail(error: TrainingWorkerError, priority: number): void {
    if (this.failure === undefined || priority > this.failure.priority) this.failure = { error, priority };
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    requestAbort(this.control);
    this.failed.reject(error);
  }

  private async run(): Promise<TrainingResult> {
    const { spec } = this;
    const sessionStart = this.clock.now();
    const specHash = trainingSpecHash(spec);
    const resume = await this.findResumePoint(specHash);
    const startStep = resume?.meta.step ?? 0;
    const losses = resume ? resume.meta.losses.slice(0, startStep) : [];
    const priorElapsedMs = resume?.meta.elapsedMs ?? 0;
    if (resume) this.lastSaved = { step: startStep, path: resume.path };

    let final: Extract<WorkerToMain, { type: 'checkpoint' }> | undefined;
    let tracker: ProgressTracker | undefined;
    const allFinished = deferred<void>();
    const allReady = deferred<void>();
    const elapsed = () => priorElapsedMs + this.clock.now() - sessionStart;

    const onMessage = (worker: number, message: WorkerToMain) => {
      this.resetWatchdog();
      const slot = this.slots[worker];
      switch (message.type) {
        case 'log':
          this.log(`[worker ${message.worker}] ${message.message}`);
          break;
        case 'ready':
          slot.ready = message;
          if (this.slots.every((s) => s.ready)) allReady.resolve();
          break;
        case 'progress': {
          losses[message.step - 1] = message.loss;
          if (tracker && !this.shuttingDown)
            this.notify('progress', tracker.update(message, this.clock.now()));
          break;
        }
        case 'checkpoint':
          if (message.reason === 'final') final = message;
          else
            this.queueSave(
              message.step,
              { weights: message.weights, optimizer: message.optimizer, ema: message.ema },
              losses,
              elapsed,
              'interval',
            );
          break;
        case 'finished':
          slot.finished = message;
          if (this.slots.every((s) => s.finished) && final) allFinished.resolve();
          break;
        case 'failed': {
          const error = new TrainingWorkerError(
            `training worker ${message.worker} failed${describeStep(message.step)}: ${message.error.message}`,
            message.worker,
            message.step,
            { cause: Object.assign(new Error(message.error.message), message.error) },
          );
          this.fail(error, PRIORITY_REPORTED);
          break;
        }
      }
    };

    try {
      for (let worker = 0; worker < spec.workers; worker++) {
        const init: WorkerInit = {
          spec,
          workerIndex: worker,
          control: this.control.buffer as SharedArrayBuffer,
          ...(resume && {
            resume: {
              step: startStep,
              weights: new Uint8Array(resume.weights),
              optimizer: new Uint8Array(resume.optimizer),
              ...(resume.ema && { ema: new Uint8Array(resume.ema) }),
            },
          }),
          ...(!resume &&
            this.options.initialWeights && {
              initial: {
                weights: new Uint8Array(this.options.initialWeights),
                ...(this.options.initialEma && { ema: new Uint8Array(this.options.initialEma) }),
              },
            }),
        };
        this.spawnWorker(worker, init, onMessage);
      }
      this.armStartupTimeout();
      await Promise.race([allReady.promise, this.failed.promise]);
      this.clearWatchdog();

      const ready = this.slots.map((slot) => slot.ready!);
      const reference = ready[0];
      for (const other of ready.slice(1)) {
        const differs =
          other.layoutHash !== reference.layoutHash
            ? 'variables (names or shapes)'
            : other.weightsChecksum !== reference.weightsChecksum
              ? 'initial weights (the task must draw them from ctx.initRng)'
              : other.startStep !== reference.startStep
                ? 'start step'
                : undefined;
        if (differs) {
          this.fail(
            new TrainingWorkerError(
              `replicas differ at start: worker ${other.worker}'s ${differs} differ from worker 0's`,
              other.worker,
              STEP_INITIALISING,
            ),
            PRIORITY_MAIN,
          );
          await this.failed.promise;
        }
      }
      this.log(
        `${spec.kind}: ${reference.parameterCount} parameters, ${spec.workers} worker(s), ` +
          `${resume ? `resuming at step ${startStep}` : 'from step 0'} of ${spec.steps}`,
      );
      const exchange =
        spec.workers > 1
          ? new SharedArrayBuffer(exchangeBufferBytes(reference.exchangeLength, spec.workers))
          : undefined;
      tracker = new ProgressTracker(spec.steps, sessionStart, this.clock.now());
      for (const slot of this.slots) slot.handle.post({ type: 'start', ...(exchange && { exchange }) });
      this.started = true;
      this.resetWatchdog();
      await Promise.race([allFinished.promise, this.failed.promise]);
      this.clearWatchdog();
      await this.shutdown();
      await this.writes;

      const finished = this.slots.map((slot) => slot.finished!);
      const completed = finished[0].completedSteps;
      const cancelled = finished[0].cancelled;
      const weightsBlob = Buffer.from(
        final!.weights.buffer,
        final!.weights.byteOffset,
        final!.weights.byteLength,
      );
      const optimizerBlob = Buffer.from(
        final!.optimizer.buffer,
        final!.optimizer.byteOffset,
        final!.optimizer.byteLength,
      );
      const emaWeightsBlob = final!.ema
        ? Buffer.from(final!.ema.buffer, final!.ema.byteOffset, final!.ema.byteLength)
        : undefined;
      if (this.lastSaved?.step !== completed && (!cancelled || (this.options.checkpointOnCancel ?? true))) {
        this.queueSave(
          completed,
          { weights: weightsBlob, optimizer: optimizerBlob, ema: emaWeightsBlob },
          losses,
          elapsed,
          'final',
        );
        await this.writes;
      }
      if (this.failure) throw this.failure.error;
      if (cancelled) this.log(`cancelled after step ${completed} of ${spec.steps}`);
      return {
        steps: completed,
        cancelled,
        finalLoss: losses[completed - 1] ?? Number.NaN,
        losses: losses.slice(0, completed),
        weightsBlob,
        optimizerBlob,
        ...(emaWeightsBlob && { emaWeightsBlob }),
        checkpointPath: this.lastSaved?.path,
        elapsedMs: this.clock.now() - sessionStart,
        totalElapsedMs: elapsed(),
        resumedFromStep: resume ? startStep : undefined,
        backend: reference.backend,
        architecture: reference.architecture,
        workers: finished.map(({ worker, weightsChecksum, tensors, timing }) => ({
          worker,
          weightsChecksum,
          tensors,
          timing,
        })),
      };
    } catch (error) {
      this.clearWatchdog();
      let own: TrainingWorkerError | undefined;
      if (!(error instanceof TrainingWorkerError)) {
        own = new TrainingWorkerError(`training failed: ${(error as Error).message}`, undefined, undefined, {
          cause: error,
        });
        this.fail(own, PRIORITY_MAIN);
      }
      await this.shutdown();
      await this.writes.catch(() => undefined);
      // The main thread's own error (a checkpoint it cannot read, ...) as itself; a worker's as the root cause.
      throw this.failure!.error === own ? error : this.failure!.error;
    }
  }

  private async findResumePoint(specHash: string): Promise<LoadedCheckpoint | undefined> {
    if (!this.options.resume) {
      const existing = await this.store.steps();
      if (existing.length > 0) {
        throw new CheckpointError(
          `${this.store.dir} already holds checkpoints (up to step ${existing.at(-1)}): ` +
            'pass resume: true to continue them, or use an empty checkpointDir',
        );
      }
      return undefined;
    }
    const latest = await this.store.loadLatest();
    if (latest === undefined) {
      this.log(`no checkpoint in ${this.store.dir}: starting at step 0`);
      return undefined;
    }
    if (latest.meta.specHash !== specHash) {
      throw new CheckpointError(
        `${latest.path} belongs to a different job (spec hash ${latest.meta.specHash.slice(0, 12)}…, this spec ` +
          `${specHash.slice(0, 12)}…): kind, config, seed, steps, batchSize, workers and optimizer must match`,
      );
    }
    return latest;
  }

  private spawnWorker(
    worker: number,
    init: WorkerInit,
    onMessage: (worker: number, m: WorkerToMain) => void,
  ) {
    const handle = this.factory.spawn(init);
    const exit = deferred<void>();
    const slot: Slot = { handle, exited: exit.promise, hasExited: false };
    this.slots.push(slot);
    handle.onMessage((message) => onMessage(worker, message));
    handle.onError((error) => {
      const step = workerStep(this.control, worker);
      this.fail(
        new TrainingWorkerError(
          `training worker ${worker} crashed${describeStep(step)}: ${error.message}`,
          worker,
          step,
          { cause: error },
        ),
        PRIORITY_REPORTED,
      );
    });
    handle.onExit((code) => {
      slot.hasExited = true;
      exit.resolve();
      if (slot.finished || this.shuttingDown) return;
      const step = workerStep(this.control, worker);
      this.fail(
        new TrainingWorkerError(
          `training worker ${worker} exited with code ${code}${describeStep(step)} before finishing`,
          worker,
          step,
        ),
        PRIORITY_EXIT,
      );
    });
  }

  /**
   * After a finished run, lets the workers end on their own for a grace period (they dispose their replicas), then
   * terminates the rest; after a failure, terminates at once. Resolves when every thread has ended.
   */
  private async shutdown(): Promise<void> {
    this.shuttingDown = true;
    const allExited = Promise.all(this.slots.map((slot) => slot.exited));
    if (this.failure) {
      requestAbort(this.control);
    } else {
      let timer: unknown;
      const grace = new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, this.options.shutdownGraceMs ?? 2000);
      });
      await Promise.race([allExited, grace]);
      this.clock.clearTimeout(timer);
    }
    await Promise.all(this.slots.filter((slot) => !slot.hasExited).map((slot) => slot.handle.terminate()));
    await allExited;
  }

  private queueSave(
    step: number,
    blobs: { weights: Uint8Array; optimizer: Uint8Array; ema?: Uint8Array },
    losses: number[],
    elapsed: () => number,
    reason: 'interval' | 'final',
  ): void {
    const content = {
      step,
      steps: this.spec.steps,
      seed: this.spec.seed,
      kind: this.spec.kind,
      specHash: trainingSpecHash(this.spec),
      losses: losses.slice(0, step),
      elapsedMs: elapsed(),
    };
    this.writes = this.writes.then(async () => {
      try {
        const path = await this.store.save(content, blobs.weights, blobs.optimizer, blobs.ema);
        this.lastSaved = { step, path };
      } catch (error) {
        this.fail(
          new TrainingWorkerError(
            `checkpoint at step ${step} could not be written: ${(error as Error).message}`,
            undefined,
            step,
            {
              cause: error,
            },
          ),
          PRIORITY_REPORTED,
        );
        throw error;
      }
      this.notify('checkpoint', { step, path: this.lastSaved.path, reason });
    });
  }

  private armStartupTimeout(): void {
    const limit = this.options.startupTimeoutMs;
    if (limit === undefined) return;
    this.watchdog = this.clock.setTimeout(() => {
      const waiting = this.slots.flatMap((slot, worker) => (slot.ready ? [] : [worker]));
      this.fail(
        new TrainingWorkerError(
          `training workers not ready after ${limit} ms (still initialising: worker ${waiting.join(', ')})`,
          waiting[0],
          STEP_INITIALISING,
        ),
        PRIORITY_MAIN,
      );
    }, limit);
  }

  /** After start: re-armed by every worker message. */
  private resetWatchdog(): void {
    const limit = this.options.stallTimeoutMs;
    if (limit === undefined || !this.started || this.shuttingDown) return;
    this.clearWatchdog();
    this.watchdog = this.clock.setTimeout(() => {
      const steps = this.slots.map((_, worker) => workerStep(this.control, worker));
      const step = Math.min(...steps.filter((s) => s >= 0), Number.POSITIVE_INFINITY);
      const where = steps.map((s, worker) => `worker ${worker}${describeStep(s) || ' finished'}`).join(', ');
      this.fail(
        new TrainingWorkerError(
          `no word from any training worker for ${limit} ms (${where}); stalled`,
          undefined,
          Number.isFinite(step) ? step : undefined,
        ),
        PRIORITY_MAIN,
      );
    }, limit);
  }

  private clearWatchdog(): void {
    if (this.watchdog !== undefined) this.clock.clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }
}

/** Starts a training job in worker threads (see TrainingRun); throws a TrainingSpecError for an invalid spec. */
export function startTraining<Config extends object>(
  spec: TrainingSpec<Config>,
  options: StartTrainingOptions = {},
): TrainingRun {
  return new TrainingRun(spec, options);
}
