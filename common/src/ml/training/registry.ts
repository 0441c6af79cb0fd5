// The task registry: what a training worker can train. A task module (the segmenter, later the GANs and the
// diffusion model) calls registerTrainingTask at import time; the worker imports the spec's taskModules, then looks
// the spec's kind up here. The runtime therefore has no compile-time dependency on any model.
import type * as tf from '@tensorflow/tfjs';

import type { Rng } from '../../util/rng.js';
import type { TrainableModel } from '../model.js';

import type { OptimizerSpec } from './optimizers.js';
import type { BatchPart, TrainingSpec } from './spec.js';

export interface TaskContext {
  workerIndex: number;
  workerCount: number;
  /**
   * The same stream in every worker (derived from the seed only): draw initial weights from it, so every replica
   * starts identical (the runtime checks a checksum before the first step).
   */
  initRng: Rng;
  /** Log lines reach the main thread's logger, prefixed with the worker. */
  log(message: string): void;
}

export interface TaskInit {
  /** The replica. Its variables are trained (all of them; a gradient the task leaves out counts as zero). */
  model: TrainableModel;
  /**
   * One phase per step (the classic task): the optimizer the task wants for all of the model's variables
   * (spec.optimizer overrides it). Give either this or `phases`.
   */
  optimizer?: OptimizerSpec;
  /**
   * Several optimizer phases per step (GANs: D, then lazy R1, then G): run in this order, each computed by
   * computePhase, all-reduced over the workers and applied by its own optimizer before the next phase starts
   * (so G's phase sees the D just updated). Give either this or `optimizer`.
   */
  phases?: PhaseSpec[];
  /** Phase whose loss is the run's `loss` (progress, losses, checkpoints); must run every step. Default: the first. */
  lossPhase?: string;
  /** Exponential moving averages of some variables (G_ema), kept in every worker, checkpointed, returned. */
  ema?: EmaSpec;
  /**
   * Non-trained state variables (e.g. StyleGAN2's path-length mean) that the runtime checkpoints and restores with
   * the optimizer state, and includes in the replica checksums. The task must update them identically in every
   * worker: from values every worker shares, such as the averaged metrics afterPhase receives.
   */
  buffers?: Record<string, tf.Variable>;
}

/** One optimizer phase of a multi-phase task. */
export interface PhaseSpec {
  /** Unique among the task's phases (letters, digits, _ . -), e.g. 'D', 'Dreg', 'G', 'Greg'. */
  name: string;
  /**
   * Names of the model variables this phase trains: its gradients and nothing else (the all-reduced vector is
   * these, in name order). May be omitted with shareOptimizerWith (then that phase's).
   */
  variables?: readonly string[];
  /** This phase's own optimizer. */
  optimizer?: OptimizerSpec;
  /**
   * Use the optimizer (state included) of this earlier phase instead of an own one, over the same variables:
   * StyleGAN2's Dmain and Dreg update D with one Adam. Every application counts as one optimizer step.
   */
  shareOptimizerWith?: string;
  /**
   * Run only on steps where step % every === offset (lazy regularisation: R1 every 16, path length every 4;
   * StyleGAN2 runs them at step 0, k, 2k, ...). Decided from the step alone, so every worker skips the phase and
   * its all-reduce together. Default every 1, offset 0.
   */
  every?: number;
  offset?: number;
  /**
   * Names of the scalar metrics computePhase returns for this phase; they are averaged over the workers (weighted
   * by images, like the loss) and reported in progress. Undeclared metrics are an error.
   */
  metrics?: readonly string[];
}

/** True when `phase` runs at `step` (the runtime's rule, exported for tasks and tests). */
export function phaseRunsAt(phase: Pick<PhaseSpec, 'every' | 'offset'>, step: number): boolean {
  const every = phase.every ?? 1;
  return step % every === (phase.offset ?? 0);
}

/**
 * An exponential moving average of model variables, updated after every step's phases in every worker:
 * shadow ← β·shadow + (1 − β)·variable, starting from the initial values (StyleGAN's G_ema). The shadows are saved
 * in checkpoints (ckpt-N.ema) and returned as TrainingResult.emaWeightsBlob.
 */
export interface EmaSpec {
  /** Model variable names to average. */
  variables: readonly string[];
  /**
   * β per step: a constant, or StyleGAN2's rule from a half-life in images: halfLife = min(halfLifeImages,
   * rampup · imagesSeen) when rampup is given, β = 0.5^(batchSize / halfLife); imagesSeen = step · batchSize.
   */
  beta: number | { halfLifeImages: number; rampup?: number };
  /** The EMA blob's architecture (default: the model's): e.g. the generator's own, so it loads into a generator. */
  architecture?: { name: string; config: Record<string, unknown> };
  /** Removed from the names in the EMA blob (e.g. 'G/' so the blob has the generator's own variable names). */
  stripPrefix?: string;
}

/** β of the EMA update at 0-based `step` (see EmaSpec.beta). */
export function emaBetaAt(beta: EmaSpec['beta'], step: number, batchSize: number): number {
  if (typeof beta === 'number') return beta;
  let halfLife = beta.halfLifeImages;
  if (beta.rampup !== undefined) halfLife = Math.min(halfLife, step * batchSize * beta.rampup);
  return Math.pow(0.5, batchSize / Math.max(halfLife, 1e-8));
}

export interface StepBatch extends BatchPart {
  /**
   * Identical in every worker for this step (derived from seed and step; per phase for multi-phase tasks): to draw
   * one global batch of globalSize and take [offset, offset + count) of it, which makes the run independent of the
   * worker count.
   */
  sharedRng: Rng;
  /**
   * Identical in every worker and, unlike sharedRng, a fresh copy of the same stream in every phase of the step:
   * draw the step's real batch from it so all phases of a step see the same reals (as StyleGAN2's loop does).
   */
  stepSharedRng: Rng;
}

export interface LossAndGrads {
  /** Mean loss over this worker's images. */
  loss: number;
  /** Gradients of that mean loss by variable name; the runtime disposes them. */
  grads: Record<string, tf.Tensor>;
  /** Images behind the loss; workers' gradients are averaged weighted by it. */
  images: number;
}

export interface PhaseResult extends LossAndGrads {
  /** The phase's declared metrics (PhaseSpec.metrics) for this worker's images. */
  metrics?: Record<string, number>;
}

/** What afterPhase gets: the phase's values averaged over all workers (identical in every worker). */
export interface PhaseOutcome {
  loss: number;
  images: number;
  metrics: Record<string, number>;
  lr: number;
}

export interface TrainingTask<Config extends object = Record<string, unknown>> {
  /** Builds the replica (called once per worker, after backend selection). */
  init(spec: TrainingSpec<Config>, ctx: TaskContext): TaskInit | Promise<TaskInit>;
  /** Loads this worker's part of the data (after init; a resumed run calls it too). */
  loadShard(workerIndex: number, workerCount: number): void | Promise<void>;
  /**
   * Single-phase tasks: samples this worker's batch and returns the loss and gradients. `rng` is derived from
   * (seed, step, worker), so a resumed run draws exactly what an uninterrupted one would. Must not keep tensors
   * across steps. `step` (here and in computePhase/afterPhase) is the schedule position: spec.stepOffset + the
   * run's own step, out of scheduleTotalSteps(spec) (see TrainingSpec.stepOffset).
   */
  computeLossAndGrads?(step: number, rng: Rng, batch: StepBatch): LossAndGrads | Promise<LossAndGrads>;
  /**
   * Multi-phase tasks: one phase of one step on this worker's part of the batch; gradients only for the phase's
   * variables. `rng` derives from (seed, step, phase, worker). Must not keep tensors across calls.
   */
  computePhase?(
    phase: Readonly<PhaseSpec>,
    step: number,
    rng: Rng,
    batch: StepBatch,
  ): PhaseResult | Promise<PhaseResult>;
  /**
   * After a phase's all-reduce and update, in every worker, with the averaged outcome: where a task updates its
   * buffers (identically everywhere).
   */
  afterPhase?(phase: Readonly<PhaseSpec>, step: number, outcome: PhaseOutcome): void;
  /** Frees the task's own tensors (the runtime disposes the model). */
  dispose?(): void;
}

export type TrainingTaskFactory<Config extends object = Record<string, unknown>> = () => TrainingTask<Config>;

// On globalThis under a registered symbol, so a task module that reaches this file through another path (a second
// copy of the module graph) still registers with the same table.
const REGISTRY_KEY = Symbol.for('fedsynth.training.tasks');

function registry(): Map<string, TrainingTaskFactory<object>> {
  const holder = globalThis as { [REGISTRY_KEY]?: Map<string, TrainingTaskFactory<object>> };
  holder[REGISTRY_KEY] ??= new Map();
  return holder[REGISTRY_KEY];
}

/** Registers a task kind. Registering the same factory again is harmless; a different one for a taken kind throws. */
export function registerTrainingTask<Config extends object>(
  kind: string,
  factory: TrainingTaskFactory<Config>,
): void {
  if (typeof kind !== 'string' || kind.trim() === '') throw new Error('registerTrainingTask: empty kind');
  const existing = registry().get(kind);
  if (existing !== undefined && existing !== factory) {
    throw new Error(`registerTrainingTask: task kind '${kind}' is already registered by another factory`);
  }
  registry().set(kind, factory as TrainingTaskFactory<object>);
}

export function registeredTrainingTasks(): string[] {
  return [...registry().keys()].sort();
}

/** Creates a task instance of `kind`; the error lists the registered kinds and the modules that were imported. */
export function createTrainingTask(
  kind: string,
  importedModules: readonly string[] = [],
): TrainingTask<object> {
  const factory = registry().get(kind);
  if (factory === undefined) {
    const known = registeredTrainingTasks();
    throw new Error(
      `unknown training task kind '${kind}' (registered: ${known.length > 0 ? known.join(', ') : 'none'}; ` +
        `task modules imported: ${importedModules.length > 0 ? importedModules.join(', ') : 'none'})`,
    );
  }
  return factory();
}
