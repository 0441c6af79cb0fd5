// Messages between the main thread (TrainingRun) and the training workers. Nothing here is on the per-step
// gradient path (that is shared memory, see allreduce.ts): workers report, the main thread supervises.
import type { BackendCandidate, BackendDevice } from '../backend/index.js';

import type { PhaseProgress } from './progress.js';
import type { TrainingSpec } from './spec.js';

export interface WorkerInit {
  spec: TrainingSpec<object>;
  workerIndex: number;
  /** The control block (see allreduce.ts). */
  control: SharedArrayBuffer;
  /** State to continue from (every worker gets the same bytes). */
  resume?: { step: number; weights: Uint8Array; optimizer: Uint8Array; ema?: Uint8Array };
  /**
   * Weights to start a fresh run from (ignored when resuming): assigned after the task built the model, with a
   * fresh optimizer; the EMA shadows start from `ema` when given, else from these weights.
   */
  initial?: { weights: Uint8Array; ema?: Uint8Array };
}

export interface StartMessage {
  type: 'start';
  /** The gradient exchange (absent with one worker). */
  exchange?: SharedArrayBuffer;
}

export type MainToWorker = StartMessage;

export interface BackendSummary {
  name: string;
  candidate: BackendCandidate;
  device: BackendDevice;
  tfjsVersion: string;
}

export interface WorkerTiming {
  /** Steps this worker ran in this session. */
  steps: number;
  /** Sums over those steps, in milliseconds. */
  computeMs: number;
  /** Writing the gradient into shared memory and reading the average back. */
  copyMs: number;
  /** Averaging this worker's chunk. */
  reduceMs: number;
  /** Waiting at barriers: load imbalance and synchronisation. */
  waitMs: number;
  optimizerMs: number;
}

export interface TensorCounts {
  /** tf.memory().numTensors after init and restore, before the first step. */
  atStart: number;
  /** After the first step of this session (warm-up: lazily created state exists from here on). */
  afterFirstStep: number;
  /** After the last step, before the replica is disposed. */
  atEnd: number;
}

export type WorkerToMain =
  | { type: 'log'; worker: number; message: string }
  | {
      type: 'ready';
      worker: number;
      parameterCount: number;
      /** sha256 of the variables' names, shapes and dtypes in exchange order. */
      layoutHash: string;
      /** sha256 of the variables' values: equal in every worker or the replicas differ. */
      weightsChecksum: string;
      numTensors: number;
      startStep: number;
      /** Floats of the gradient exchange's slots: the longest phase vector (gradients + metrics). */
      exchangeLength: number;
      backend: BackendSummary;
      architecture: { name: string; config: Record<string, unknown> };
    }
  | {
      type: 'progress';
      /** Steps completed (the step index just finished + 1). */
      step: number;
      loss: number;
      images: number;
      lr: number;
      stepMs: number;
      /** Multi-phase tasks: the phases that ran in the step, in order. */
      phases?: Record<string, PhaseProgress>;
    }
  | {
      type: 'checkpoint';
      /** 'final': the end of the run or of a cancelled run, always sent once by worker 0. */
      reason: 'interval' | 'final';
      step: number;
      weights: Uint8Array;
      optimizer: Uint8Array;
      /** The EMA shadows (fedsynth-weights blob), when the task keeps an EMA. */
      ema?: Uint8Array;
    }
  | {
      type: 'finished';
      worker: number;
      completedSteps: number;
      cancelled: boolean;
      weightsChecksum: string;
      tensors: TensorCounts;
      timing: WorkerTiming;
    }
  | {
      type: 'failed';
      worker: number;
      /** The step index being computed, or -1 during initialisation. */
      step: number;
      error: { name: string; message: string; stack?: string };
    };
