// One data-parallel training worker: selects the backend, imports the task modules, builds its replica, then
// runs the steps. Per step: the task's loss and gradients on this worker's part of the global batch, the shared
// memory all-reduce (allreduce.ts), the same optimizer update as every other worker (so replicas stay
// bit-identical), and, from worker 0 only, progress and checkpoints for the main thread.
import { createHash } from 'node:crypto';

import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../util/rng.js';
import type { BackendChoice, SelectBackendOptions } from '../backend/index.js';
import type { TrainableModel } from '../model.js';
import {
  architectureKey,
  assignWeights,
  decodeWeights,
  encodeWeights,
  variablesToWeights,
  WeightsMismatchError,
} from '../weights/index.js';

import {
  CONTROL_CANCEL,
  CONTROL_STOP,
  GradientExchange,
  PeerAbortError,
  requestAbort,
  setWorkerStep,
  SharedBarrier,
  STEP_FINISHED,
  STEP_INITIALISING,
} from './allreduce.js';
import {
  createOptimizer,
  decodeOptimizerState,
  encodeOptimizerState,
  learningRateAt,
  type Optimizer,
} from './optimizers.js';
import type { MainToWorker, TensorCounts, WorkerInit, WorkerTiming, WorkerToMain } from './protocol.js';
import { createTrainingTask, type TrainingTask } from './registry.js';
import { batchPartition, trainingSpecHash } from './spec.js';

export interface WorkerPort {
  post(message: WorkerToMain, transfer?: ArrayBuffer[]): void;
  nextMessage(): Promise<MainToWorker>;
}

export interface WorkerDeps {
  selectBackend(options: SelectBackendOptions): Promise<BackendChoice>;
  importModule(url: string): Promise<unknown>;
  now(): number;
}

/** The variables in exchange order (sorted by name) with their offsets in the flat gradient vector. */
export interface ParameterLayout {
  names: string[];
  shapes: number[][];
  offsets: number[];
  sizes: number[];
  total: number;
  /** Position of each name in `names`. */
  index: Map<string, number>;
}

export function parameterLayout(variables: Record<string, tf.Variable>): ParameterLayout {
  const names = Object.keys(variables).sort();
  const layout: ParameterLayout = {
    names,
    shapes: [],
    offsets: [],
    sizes: [],
    total: 0,
    index: new Map(names.map((name, position) => [name, position])),
  };
  for (const name of names) {
    const variable = variables[name];
    if (variable.dtype !== 'float32') {
      throw new Error(`variable "${name}" is ${variable.dtype}; only float32 variables can be trained`);
    }
    layout.shapes.push([...variable.shape]);
    layout.offsets.push(layout.total);
    layout.sizes.push(variable.size);
    layout.total += variable.size;
  }
  return layout;
}

function layoutHash(layout: ParameterLayout): string {
  const described = layout.names.map((name, index) => [name, layout.shapes[index]]);
  return createHash('sha256').update(JSON.stringify(described)).digest('hex');
}

/** sha256 over the variables' names and float bytes, in name order: equal iff the replicas are bit-identical. */
export function weightsChecksum(variables: Record<string, tf.Variable>): string {
  const hash = createHash('sha256');
  for (const tensor of variablesToWeights(variables)) {
    hash.update(tensor.name);
    hash.update(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
  }
  return hash.digest('hex');
}

/** An ArrayBuffer holding exactly `blob`'s bytes, for a zero-copy transfer. */
function ownBuffer(blob: Uint8Array): Uint8Array {
  return blob.byteOffset === 0 && blob.byteLength === blob.buffer.byteLength ? blob : blob.slice();
}

function serializeError(error: unknown): { name: string; message: string; stack?: string } {
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack };
  return { name: 'Error', message: String(error) };
}

/** Runs one worker to the end of the run; every failure is posted as a 'failed' message, never thrown. */
export async function runTrainingWorker(init: WorkerInit, port: WorkerPort, deps: WorkerDeps): Promise<void> {
  const { spec, workerIndex } = init;
  const workers = spec.workers;
  const control = new Int32Array(init.control);
  const log = (message: string) => port.post({ type: 'log', worker: workerIndex, message });
  let currentStep = STEP_INITIALISING;
  let task: TrainingTask<object> | undefined;
  let model: TrainableModel | undefined;
  let optimizer: Optimizer | undefined;
  try {
    const choice = await deps.selectBackend({
      prefer: spec.backend ?? 'auto',
      allowCpuTraining: spec.backend === 'cpu',
      // Once per run: worker 0 logs the choice, the others stay silent (the selector's default is console.info).
      logger: workerIndex === 0 ? log : () => {},
    });
    if (!choice.trainingCapable) {
      throw new Error(`tfjs backend '${choice.name}' cannot train: ${choice.note}`);
    }
    if (workerIndex === 0 && workers > 1 && choice.device !== 'cpu-wasm' && choice.device !== 'cpu-js') {
      log(
        `${workers} workers on ${choice.device}: libtensorflow already uses every core (or the one GPU), so ` +
          'data-parallel workers compete for it; workers: 1 is usually faster there',
      );
    }
    const modules = spec.taskModules ?? [];
    for (const url of modules) await deps.importModule(url);
    task = createTrainingTask(spec.kind, modules);
    const created = await task.init(spec, {
      workerIndex,
      workerCount: workers,
      initRng: createRng(spec.seed).fork('init'),
      log,
    });
    model = created.model;
    const optimizerSpec = spec.optimizer ?? created.optimizer;
    optimizer = createOptimizer(optimizerSpec, model.variables);
    let startStep = 0;
    if (init.resume) {
      const decoded = decodeWeights(init.resume.weights, `checkpoint weights (step ${init.resume.step})`);
      if (architectureKey(decoded.manifest.architecture) !== architectureKey(model.architecture)) {
        throw new WeightsMismatchError(
          `checkpoint weights are for ${architectureKey(decoded.manifest.architecture)}, ` +
            `the task built ${architectureKey(model.architecture)}`,
        );
      }
      assignWeights(model.variables, decoded.tensors);
      const state = decodeOptimizerState(
        init.resume.optimizer,
        `checkpoint optimizer (step ${init.resume.step})`,
      );
      if (state.step !== init.resume.step) {
        throw new Error(
          `checkpoint optimizer state is at step ${state.step}, the checkpoint at ${init.resume.step}`,
        );
      }
      optimizer.loadState(state);
      startStep = init.resume.step;
    }
    await task.loadShard(workerIndex, workers);
    const layout = parameterLayout(model.variables);
    const tensors: TensorCounts = { atStart: tf.memory().numTensors, afterFirstStep: -1, atEnd: -1 };
    port.post({
      type: 'ready',
      worker: workerIndex,
      parameterCount: layout.total,
      layoutHash: layoutHash(layout),
      weightsChecksum: weightsChecksum(model.variables),
      numTensors: tensors.atStart,
      startStep,
      backend: {
        name: choice.name,
        candidate: choice.candidate,
        device: choice.device,
        tfjsVersion: choice.tfjsVersion,
      },
      architecture: model.architecture,
    });

    const start = await port.nextMessage();
    if (start.type !== 'start') {
      throw new Error(`worker expected 'start', got '${(start as { type: string }).type}'`);
    }
    const exchange =
      workers > 1
        ? new GradientExchange(
            start.exchange!,
            layout.total,
            workers,
            workerIndex,
            new SharedBarrier(control, workers),
          )
        : undefined;
    const specHash = trainingSpecHash(spec);
    const blobs = (completed: number) => {
      const provenance = {
        trainer: 'fedsynth-training',
        kind: spec.kind,
        seed: spec.seed,
        step: completed,
        specHash,
      };
      const weights = encodeWeights(variablesToWeights(model!.variables), {
        architecture: model!.architecture,
        provenance,
      });
      const state = encodeOptimizerState(optimizer!.state(), { provenance });
      return { weights: ownBuffer(weights), optimizer: ownBuffer(state) };
    };

    const timing: WorkerTiming = {
      steps: 0,
      computeMs: 0,
      copyMs: 0,
      reduceMs: 0,
      waitMs: 0,
      optimizerMs: 0,
    };
    const part = batchPartition(spec.batchSize, workers, workerIndex);
    const stepRoot = createRng(spec.seed).fork('step');
    let completed = startStep;
    let cancelled = false;
    for (let step = startStep; step < spec.steps; step++) {
      currentStep = step;
      setWorkerStep(control, workerIndex, step);
      const t0 = deps.now();
      const stepRng = stepRoot.fork(step);
      const result = await task.computeLossAndGrads(step, stepRng.fork(`worker:${workerIndex}`), {
        ...part,
        sharedRng: stepRng.fork('shared'),
      });
      checkLossAndGrads(result.loss, result.grads, layout, step);
      const t1 = deps.now();
      timing.computeMs += t1 - t0;

      let grads: Record<string, tf.Tensor>;
      let loss = result.loss;
      let images = result.images;
      let stop: boolean;
      if (exchange) {
        const slot = exchange.ownSlot;
        layout.names.forEach((name, index) => {
          const gradient = result.grads[name];
          const offset = layout.offsets[index];
          if (gradient) slot.set(gradient.dataSync() as Float32Array, offset);
          else slot.fill(0, offset, offset + layout.sizes[index]);
        });
        tf.dispose(result.grads);
        const t2 = deps.now();
        const reduced = exchange.reduce(result.loss, result.images, () => {
          if (workerIndex === 0) Atomics.store(control, CONTROL_STOP, Atomics.load(control, CONTROL_CANCEL));
        });
        const t3 = deps.now();
        loss = reduced.loss;
        images = reduced.images;
        stop = Atomics.load(control, CONTROL_STOP) !== 0;
        // Views, not copies: backends copy on write (wasm, tensorflow) or keep the view (cpu), and these tensors
        // are consumed and disposed within this step, before this worker's next barrier lets anyone overwrite
        // the result.
        grads = {};
        layout.names.forEach((name, index) => {
          const offset = layout.offsets[index];
          const values = exchange.result.subarray(offset, offset + layout.sizes[index]);
          grads[name] = tf.tensor(values, layout.shapes[index]);
        });
        timing.copyMs += t2 - t1 + (deps.now() - t3);
        timing.reduceMs += reduced.reduceMs;
        timing.waitMs += reduced.waitMs;
      } else {
        grads = result.grads;
        stop = Atomics.load(control, CONTROL_CANCEL) !== 0;
      }

      const t4 = deps.now();
      const lr = learningRateAt(optimizerSpec, step, spec.steps);
      try {
        optimizer.apply(grads, lr);
      } finally {
        tf.dispose(grads);
      }
      const t5 = deps.now();
      timing.optimizerMs += t5 - t4;
      timing.steps += 1;
      completed = step + 1;
      if (step === startStep) tensors.afterFirstStep = tf.memory().numTensors;
      if (workerIndex === 0) {
        port.post({ type: 'progress', step: completed, loss, images, lr, stepMs: t5 - t0 });
        if (spec.checkpointEvery > 0 && completed % spec.checkpointEvery === 0 && completed < spec.steps) {
          const { weights, optimizer: state } = blobs(completed);
          port.post({ type: 'checkpoint', reason: 'interval', step: completed, weights, optimizer: state }, [
            weights.buffer as ArrayBuffer,
            state.buffer as ArrayBuffer,
          ]);
        }
      }
      if (stop && completed < spec.steps) {
        cancelled = true;
        break;
      }
    }

    tensors.atEnd = tf.memory().numTensors;
    if (tensors.afterFirstStep < 0) tensors.afterFirstStep = tensors.atEnd;
    if (workerIndex === 0) {
      const { weights, optimizer: state } = blobs(completed);
      port.post({ type: 'checkpoint', reason: 'final', step: completed, weights, optimizer: state }, [
        weights.buffer as ArrayBuffer,
        state.buffer as ArrayBuffer,
      ]);
    }
    port.post({
      type: 'finished',
      worker: workerIndex,
      completedSteps: completed,
      cancelled,
      weightsChecksum: weightsChecksum(model.variables),
      tensors,
      timing,
    });
    setWorkerStep(control, workerIndex, STEP_FINISHED);
  } catch (error) {
    // A peer's failure is reported by that peer (or the main thread); this worker just stops.
    if (!(error instanceof PeerAbortError)) {
      port.post({ type: 'failed', worker: workerIndex, step: currentStep, error: serializeError(error) });
      requestAbort(control);
    }
  } finally {
    try {
      task?.dispose?.();
      optimizer?.dispose();
      model?.dispose();
    } catch {
      // The thread ends next; a failed disposal must not mask the report above.
    }
  }
}

function checkLossAndGrads(
  loss: number,
  grads: Record<string, tf.Tensor>,
  layout: ParameterLayout,
  step: number,
): void {
  if (typeof loss !== 'number' || !Number.isFinite(loss)) {
    tf.dispose(grads);
    throw new Error(`loss is ${loss} at step ${step} (diverged or a broken batch)`);
  }
  for (const [name, gradient] of Object.entries(grads)) {
    const index = layout.index.get(name) ?? -1;
    const problem =
      index < 0
        ? `a gradient for "${name}", which is not a model variable`
        : gradient.shape.join(',') !== layout.shapes[index].join(',')
          ? `gradient "${name}" has shape [${gradient.shape}], the variable [${layout.shapes[index]}]`
          : undefined;
    if (problem) {
      tf.dispose(grads);
      throw new Error(`task returned ${problem}`);
    }
  }
}
