// One data-parallel training worker: selects the backend, imports the task modules, builds its replica, then
// runs the steps. Per step and per phase (one for a classic task; D, Dreg, G, ... for a GAN, see phases.ts): the
// task's loss and gradients on this worker's part of the global batch, the shared memory all-reduce
// (allreduce.ts), the same optimizer update as every other worker (so replicas stay bit-identical); then the EMA
// shadows; and, from worker 0 only, progress and checkpoints for the main thread.
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
import { learningRateAt } from './optimizers.js';
import {
  buildPhaseSetup,
  describePhases,
  encodeSetupState,
  loadSetupState,
  parameterLayout,
  type ParameterLayout,
  type PhaseSetup,
  type RuntimePhase,
} from './phases.js';
import type { PhaseProgress } from './progress.js';
import type { MainToWorker, TensorCounts, WorkerInit, WorkerTiming, WorkerToMain } from './protocol.js';
import {
  createTrainingTask,
  emaBetaAt,
  phaseRunsAt,
  type PhaseOutcome,
  type PhaseResult,
  type TrainingTask,
} from './registry.js';
import { batchPartition, scheduleStep, scheduleTotalSteps, trainingSpecHash } from './spec.js';

export { parameterLayout, type ParameterLayout } from './phases.js';

export interface WorkerPort {
  post(message: WorkerToMain, transfer?: ArrayBuffer[]): void;
  nextMessage(): Promise<MainToWorker>;
}

export interface WorkerDeps {
  selectBackend(options: SelectBackendOptions): Promise<BackendChoice>;
  importModule(url: string): Promise<unknown>;
  now(): number;
}

function layoutHash(layout: ParameterLayout, setup: PhaseSetup): string {
  const described = layout.names.map((name, index) => [name, layout.shapes[index]]);
  const hash = createHash('sha256').update(JSON.stringify(described));
  // The single-phase hash stays what it was; phases, EMA and buffers are part of a multi-phase task's layout.
  if (!setup.legacy || setup.ema || Object.keys(setup.buffers).length > 0) {
    hash.update(JSON.stringify(describePhases(setup)));
  }
  return hash.digest('hex');
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

/** weightsChecksum of the model, extended over the EMA shadows and the task's buffers when there are any. */
function replicaChecksum(variables: Record<string, tf.Variable>, setup: PhaseSetup): string {
  const model = weightsChecksum(variables);
  const buffers = Object.keys(setup.buffers).length > 0 ? weightsChecksum(setup.buffers) : '';
  const ema = setup.ema ? weightsChecksum(setup.ema.shadows) : '';
  if (!buffers && !ema) return model;
  return createHash('sha256').update(`${model}/${buffers}/${ema}`).digest('hex');
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
  let setup: PhaseSetup | undefined;
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
    setup = buildPhaseSetup(created, task, spec.optimizer);
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
      loadSetupState(setup, init.resume.optimizer, init.resume.step);
      if (setup.ema) {
        if (!init.resume.ema)
          throw new Error(`the checkpoint at step ${init.resume.step} has no EMA weights`);
        setup.ema.load(init.resume.ema, `checkpoint EMA weights (step ${init.resume.step})`);
      }
      startStep = init.resume.step;
    } else if (init.initial) {
      const decoded = decodeWeights(init.initial.weights, 'initial weights');
      if (architectureKey(decoded.manifest.architecture) !== architectureKey(model.architecture)) {
        throw new WeightsMismatchError(
          `initial weights are for ${architectureKey(decoded.manifest.architecture)}, ` +
            `the task built ${architectureKey(model.architecture)}`,
        );
      }
      assignWeights(model.variables, decoded.tensors);
      // The optimizers were built fresh by buildPhaseSetup; only the EMA shadows still hold the random init.
      if (setup.ema) {
        if (init.initial.ema) setup.ema.load(init.initial.ema, 'initial EMA weights');
        else setup.ema.resetFromModel();
      }
    }
    await task.loadShard(workerIndex, workers);
    const layout = parameterLayout(model.variables);
    const tensors: TensorCounts = { atStart: tf.memory().numTensors, afterFirstStep: -1, atEnd: -1 };
    port.post({
      type: 'ready',
      worker: workerIndex,
      parameterCount: layout.total,
      layoutHash: layoutHash(layout, setup),
      weightsChecksum: replicaChecksum(model.variables, setup),
      numTensors: tensors.atStart,
      startStep,
      exchangeLength: setup.exchangeLength,
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
            setup.exchangeLength,
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
      const state = encodeSetupState(setup!, completed, provenance);
      const ema = setup!.ema?.encode(provenance);
      return {
        weights: ownBuffer(weights),
        optimizer: ownBuffer(state),
        ...(ema && { ema: ownBuffer(ema) }),
      };
    };
    const postCheckpoint = (reason: 'interval' | 'final', completed: number) => {
      const { weights, optimizer, ema } = blobs(completed);
      const transfer = [weights.buffer as ArrayBuffer, optimizer.buffer as ArrayBuffer];
      if (ema) transfer.push(ema.buffer as ArrayBuffer);
      port.post(
        { type: 'checkpoint', reason, step: completed, weights, optimizer, ...(ema && { ema }) },
        transfer,
      );
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
    // Schedules (task progress, lazy phases, learning rate, EMA ramp-up) see the position in the longer schedule
    // this run may be part of; random streams and checkpoints stay on the run's own steps.
    const totalSteps = scheduleTotalSteps(spec);
    let completed = startStep;
    let cancelled = false;
    for (let step = startStep; step < spec.steps; step++) {
      currentStep = step;
      setWorkerStep(control, workerIndex, step);
      const t0 = deps.now();
      const stepRng = stepRoot.fork(step);
      const at = scheduleStep(spec, step);
      let stop = false;
      let primary: PhaseOutcome | undefined;
      const reports: Record<string, PhaseProgress> = {};
      for (const phase of setup.phases) {
        if (!phaseRunsAt(phase.spec, at)) continue;
        const tc = deps.now();
        let result: PhaseResult;
        if (setup.legacy) {
          // The single-phase streams, exactly as before phases existed (resumes of older runs stay exact).
          result = await task.computeLossAndGrads!(at, stepRng.fork(`worker:${workerIndex}`), {
            ...part,
            sharedRng: stepRng.fork('shared'),
            stepSharedRng: stepRng.fork('shared'),
          });
        } else {
          const phaseRng = stepRng.fork(`phase:${phase.name}`);
          result = await task.computePhase!(phase.spec, at, phaseRng.fork(`worker:${workerIndex}`), {
            ...part,
            sharedRng: phaseRng.fork('shared'),
            stepSharedRng: stepRng.fork('shared'),
          });
        }
        checkPhaseResult(result, phase, setup.phases.length > 1, step);
        const t1 = deps.now();
        timing.computeMs += t1 - tc;

        const { layout } = phase;
        let grads: Record<string, tf.Tensor>;
        let outcome: Omit<PhaseOutcome, 'lr'>;
        if (exchange) {
          const slot = exchange.ownSlot;
          layout.names.forEach((name, index) => {
            const gradient = result.grads[name];
            const offset = layout.offsets[index];
            if (gradient) slot.set(gradient.dataSync() as Float32Array, offset);
            else slot.fill(0, offset, offset + layout.sizes[index]);
          });
          phase.metrics.forEach((metric, index) => {
            slot[layout.total + index] = result.metrics![metric];
          });
          tf.dispose(result.grads);
          const t2 = deps.now();
          const reduced = exchange.reduce(
            result.loss,
            result.images,
            () => {
              if (workerIndex === 0)
                Atomics.store(control, CONTROL_STOP, Atomics.load(control, CONTROL_CANCEL));
            },
            layout.total + phase.metrics.length,
          );
          const t3 = deps.now();
          stop = Atomics.load(control, CONTROL_STOP) !== 0;
          // Views, not copies: backends copy on write (wasm, tensorflow) or keep the view (cpu), and these
          // tensors are consumed and disposed within this phase, before this worker's next barrier lets anyone
          // overwrite the result (slots of every phase share one stride, so no phase's slot overlaps a result).
          grads = {};
          layout.names.forEach((name, index) => {
            const offset = layout.offsets[index];
            const values = exchange.result.subarray(offset, offset + layout.sizes[index]);
            grads[name] = tf.tensor(values, layout.shapes[index]);
          });
          const metrics: Record<string, number> = {};
          phase.metrics.forEach((metric, index) => {
            metrics[metric] = exchange.result[layout.total + index];
          });
          outcome = { loss: reduced.loss, images: reduced.images, metrics };
          timing.copyMs += t2 - t1 + (deps.now() - t3);
          timing.reduceMs += reduced.reduceMs;
          timing.waitMs += reduced.waitMs;
        } else {
          grads = result.grads;
          stop = Atomics.load(control, CONTROL_CANCEL) !== 0;
          outcome = { loss: result.loss, images: result.images, metrics: { ...result.metrics } };
        }

        const t4 = deps.now();
        const lr = learningRateAt(phase.optimizerSpec, at, totalSteps);
        try {
          phase.optimizer.apply(grads, lr);
        } finally {
          tf.dispose(grads);
        }
        timing.optimizerMs += deps.now() - t4;
        const full: PhaseOutcome = { ...outcome, lr };
        task.afterPhase?.(phase.spec, at, full);
        reports[phase.name] = full;
        if (phase === setup.lossPhase) primary = full;
      }
      if (setup.ema) {
        const t6 = deps.now();
        setup.ema.update(emaBetaAt(setup.ema.spec.beta, at, spec.batchSize));
        timing.optimizerMs += deps.now() - t6;
      }
      const t5 = deps.now();
      timing.steps += 1;
      completed = step + 1;
      if (step === startStep) tensors.afterFirstStep = tf.memory().numTensors;
      if (workerIndex === 0) {
        port.post({
          type: 'progress',
          step: completed,
          loss: primary!.loss,
          images: primary!.images,
          lr: primary!.lr,
          stepMs: t5 - t0,
          ...(!setup.legacy && { phases: reports }),
        });
        if (spec.checkpointEvery > 0 && completed % spec.checkpointEvery === 0 && completed < spec.steps) {
          postCheckpoint('interval', completed);
        }
      }
      if (stop && completed < spec.steps) {
        cancelled = true;
        break;
      }
    }

    tensors.atEnd = tf.memory().numTensors;
    if (tensors.afterFirstStep < 0) tensors.afterFirstStep = tensors.atEnd;
    if (workerIndex === 0) postCheckpoint('final', completed);
    port.post({
      type: 'finished',
      worker: workerIndex,
      completedSteps: completed,
      cancelled,
      weightsChecksum: replicaChecksum(model.variables, setup),
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
      setup?.dispose();
      model?.dispose();
    } catch {
      // The thread ends next; a failed disposal must not mask the report above.
    }
  }
}

function checkPhaseResult(result: PhaseResult, phase: RuntimePhase, multiPhase: boolean, step: number): void {
  const { loss, grads, metrics } = result;
  const fail = (message: string): never => {
    tf.dispose(grads);
    throw new Error(message);
  };
  const where = multiPhase ? ` in phase '${phase.name}'` : '';
  if (typeof loss !== 'number' || !Number.isFinite(loss)) {
    fail(`loss is ${loss}${where} at step ${step} (diverged or a broken batch)`);
  }
  if (!(Number.isFinite(result.images) && result.images >= 0)) {
    fail(`task returned ${result.images} images${where} at step ${step}`);
  }
  const { layout } = phase;
  for (const [name, gradient] of Object.entries(grads)) {
    if (gradient === undefined) continue;
    const index = layout.index.get(name) ?? -1;
    const problem =
      index < 0
        ? multiPhase
          ? `a gradient for "${name}", which is not a variable of phase '${phase.name}'`
          : `a gradient for "${name}", which is not a model variable`
        : gradient.shape.join(',') !== layout.shapes[index].join(',')
          ? `gradient "${name}" has shape [${gradient.shape}], the variable [${layout.shapes[index]}]`
          : undefined;
    if (problem) fail(`task returned ${problem}`);
  }
  for (const metric of phase.metrics) {
    const value = metrics?.[metric];
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      fail(`metric '${metric}'${where} is ${value} at step ${step}`);
    }
  }
  for (const metric of Object.keys(metrics ?? {})) {
    if (!phase.metrics.includes(metric)) {
      fail(`task returned metric '${metric}'${where}, which the phase does not declare`);
    }
  }
}
