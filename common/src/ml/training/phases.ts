// Optimizer phases, EMA shadows and the training-state blob: what a worker builds from a task's init result.
//
// A task returns either one optimizer (the classic single-phase task: one gradient of all variables per step) or
// several phases (GANs: D, lazy R1 on D, G, ...). Each phase has its own variables, gradient vector, all-reduce and
// optimizer (or shares an earlier phase's optimizer, as StyleGAN2's Dmain/Dreg share D's Adam). A single-phase
// task is run as one phase named 'main' with exactly the old random streams and checkpoint format.
import * as tf from '@tensorflow/tfjs';

import type { TrainableModel } from '../model.js';
import {
  architectureKey,
  assignWeights,
  decodeWeights,
  encodeWeights,
  variablesToWeights,
  WeightsFormatError,
  WeightsMismatchError,
  type WeightTensor,
} from '../weights/index.js';

import {
  createOptimizer,
  decodeOptimizerState,
  encodeOptimizerState,
  validateOptimizerSpec,
  type Optimizer,
  type OptimizerSpec,
  type OptimizerState,
} from './optimizers.js';
import type { EmaSpec, PhaseSpec, TaskInit, TrainingTask } from './registry.js';

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

/** A phase as a worker runs it. */
export interface RuntimePhase {
  spec: Readonly<PhaseSpec>;
  name: string;
  variables: Record<string, tf.Variable>;
  layout: ParameterLayout;
  metrics: string[];
  optimizer: Optimizer;
  optimizerSpec: OptimizerSpec;
  /** The phase whose optimizer this is (itself unless shared). */
  optimizerOwner: string;
}

export interface PhaseSetup {
  /** A task that implements only computeLossAndGrads (called with the original random streams). */
  legacy: boolean;
  phases: RuntimePhase[];
  /** Distinct optimizers by owning phase, in phase order. */
  optimizers: { name: string; optimizer: Optimizer }[];
  lossPhase: RuntimePhase;
  ema?: EmaShadows;
  buffers: Record<string, tf.Variable>;
  /** Floats per exchange slot: the longest phase vector (gradients + metrics). */
  exchangeLength: number;
  /** 'optimizer': the single optimizer's blob (the original format); 'training-state': every optimizer + buffers. */
  stateFormat: 'optimizer' | 'training-state';
  dispose(): void;
}

const NAME_PART = /^[A-Za-z0-9_.-]+$/;

/** Validates a task's init result against the model and builds phases, optimizers and EMA shadows. */
export function buildPhaseSetup(
  created: TaskInit,
  task: Pick<TrainingTask<object>, 'computeLossAndGrads' | 'computePhase'>,
  specOptimizer: OptimizerSpec | undefined,
): PhaseSetup {
  const model = created.model;
  const allNames = Object.keys(model.variables).sort();
  const problems: string[] = [];
  let phaseSpecs: PhaseSpec[];
  let legacy = false;
  if (created.phases !== undefined) {
    if (created.optimizer !== undefined) problems.push('init returned both `optimizer` and `phases`');
    if (specOptimizer !== undefined) {
      problems.push(
        'spec.optimizer overrides the optimizer of single-phase tasks only; configure the phases in the task config',
      );
    }
    if (typeof task.computePhase !== 'function')
      problems.push('a multi-phase task must implement computePhase');
    if (!Array.isArray(created.phases) || created.phases.length === 0) problems.push('phases is empty');
    phaseSpecs = Array.isArray(created.phases) ? created.phases : [];
  } else {
    const optimizer = specOptimizer ?? created.optimizer;
    if (optimizer === undefined) problems.push('init returned neither `optimizer` nor `phases`');
    legacy = typeof task.computeLossAndGrads === 'function';
    if (!legacy && typeof task.computePhase !== 'function') {
      problems.push('the task implements neither computeLossAndGrads nor computePhase');
    }
    phaseSpecs = [{ name: 'main', variables: allNames, optimizer }];
  }
  const byName = new Map<string, PhaseSpec>();
  for (const [index, phase] of phaseSpecs.entries()) {
    const where = `phase ${index} (${JSON.stringify(phase?.name)})`;
    if (typeof phase?.name !== 'string' || !NAME_PART.test(phase.name)) {
      problems.push(`${where}: name must be letters, digits, _ . -`);
      continue;
    }
    if (byName.has(phase.name)) problems.push(`${where}: name used twice`);
    else byName.set(phase.name, phase);
    const every = phase.every ?? 1;
    const offset = phase.offset ?? 0;
    if (!Number.isSafeInteger(every) || every < 1) problems.push(`${where}: every must be an integer >= 1`);
    else if (!Number.isSafeInteger(offset) || offset < 0 || offset >= every) {
      problems.push(`${where}: offset must be an integer in [0, every)`);
    }
    if ((phase.optimizer === undefined) === (phase.shareOptimizerWith === undefined)) {
      problems.push(`${where}: give exactly one of optimizer and shareOptimizerWith`);
    }
    if (phase.optimizer !== undefined) {
      try {
        validateOptimizerSpec(phase.optimizer);
      } catch (error) {
        problems.push(`${where}: ${(error as Error).message}`);
      }
    }
    if (phase.shareOptimizerWith !== undefined) {
      const owner = byName.get(phase.shareOptimizerWith);
      if (owner === undefined || owner === phase) {
        problems.push(`${where}: shareOptimizerWith '${phase.shareOptimizerWith}' is not an earlier phase`);
      } else if (
        phase.variables !== undefined &&
        [...phase.variables].sort().join('\n') !== [...resolveVariables(owner, byName)].sort().join('\n')
      ) {
        problems.push(`${where}: a phase sharing '${owner.name}''s optimizer must train the same variables`);
      }
    } else if (phase.variables === undefined) {
      problems.push(`${where}: variables are required`);
    }
    const variables = phase.shareOptimizerWith !== undefined ? [] : (phase.variables ?? []);
    const seen = new Set<string>();
    for (const name of variables) {
      if (!Object.hasOwn(model.variables, name)) problems.push(`${where}: "${name}" is not a model variable`);
      if (seen.has(name)) problems.push(`${where}: "${name}" listed twice`);
      seen.add(name);
    }
    if (phase.variables !== undefined && phase.variables.length === 0) {
      problems.push(`${where}: no variables`);
    }
    const metricNames = new Set<string>();
    for (const metric of phase.metrics ?? []) {
      if (typeof metric !== 'string' || metric === '' || metricNames.has(metric)) {
        problems.push(`${where}: metric names must be distinct non-empty strings`);
      }
      metricNames.add(metric);
    }
  }
  const lossPhaseName = created.lossPhase ?? phaseSpecs[0]?.name;
  const lossPhaseSpec = lossPhaseName === undefined ? undefined : byName.get(lossPhaseName);
  if (lossPhaseSpec === undefined) problems.push(`lossPhase '${lossPhaseName}' is not a phase`);
  else if ((lossPhaseSpec.every ?? 1) !== 1)
    problems.push(`lossPhase '${lossPhaseName}' must run every step`);
  const buffers = created.buffers ?? {};
  for (const [name, buffer] of Object.entries(buffers)) {
    if (buffer.dtype !== 'float32') problems.push(`buffer "${name}" is ${buffer.dtype}, not float32`);
    if (Object.values(model.variables).includes(buffer))
      problems.push(`buffer "${name}" is a model variable`);
  }
  if (problems.length > 0) throw new Error(`training task init: ${problems.join('; ')}`);

  const phases: RuntimePhase[] = [];
  const optimizers: { name: string; optimizer: Optimizer }[] = [];
  let ema: EmaShadows | undefined;
  const dispose = () => {
    for (const { optimizer } of optimizers) optimizer.dispose();
    ema?.dispose();
  };
  try {
    for (const phase of phaseSpecs) {
      const names = resolveVariables(phase, byName);
      const variables: Record<string, tf.Variable> = {};
      for (const name of names) variables[name] = model.variables[name];
      let optimizer: Optimizer;
      let optimizerSpec: OptimizerSpec;
      let owner = phase.name;
      if (phase.shareOptimizerWith !== undefined) {
        const ownerPhase = phases.find((p) => p.name === phase.shareOptimizerWith)!;
        optimizer = ownerPhase.optimizer;
        optimizerSpec = ownerPhase.optimizerSpec;
        owner = ownerPhase.optimizerOwner;
      } else {
        optimizerSpec = phase.optimizer!;
        optimizer = createOptimizer(optimizerSpec, variables);
        optimizers.push({ name: phase.name, optimizer });
      }
      phases.push({
        spec: phase,
        name: phase.name,
        variables,
        layout: parameterLayout(variables),
        metrics: [...(phase.metrics ?? [])],
        optimizer,
        optimizerSpec,
        optimizerOwner: owner,
      });
    }
    if (created.ema !== undefined) ema = new EmaShadows(created.ema, model);
  } catch (error) {
    dispose();
    throw error;
  }
  const exchangeLength = Math.max(...phases.map((phase) => phase.layout.total + phase.metrics.length));
  const stateFormat =
    optimizers.length === 1 && created.phases === undefined && Object.keys(buffers).length === 0
      ? 'optimizer'
      : 'training-state';
  return {
    legacy,
    phases,
    optimizers,
    lossPhase: phases.find((phase) => phase.name === lossPhaseName)!,
    ema,
    buffers,
    exchangeLength,
    stateFormat,
    dispose,
  };
}

function resolveVariables(phase: PhaseSpec, byName: Map<string, PhaseSpec>): readonly string[] {
  let current = phase;
  for (let hops = 0; current.shareOptimizerWith !== undefined && hops < byName.size; hops++) {
    const owner = byName.get(current.shareOptimizerWith);
    if (owner === undefined) break;
    current = owner;
  }
  return [...(current.variables ?? phase.variables ?? [])].sort();
}

/** A JSON description of the phases (for the replicas' layout hash). */
export function describePhases(setup: PhaseSetup): unknown {
  return {
    phases: setup.phases.map((phase) => ({
      name: phase.name,
      variables: phase.layout.names,
      every: phase.spec.every ?? 1,
      offset: phase.spec.offset ?? 0,
      metrics: phase.metrics,
      optimizer: phase.optimizerOwner,
    })),
    ema: setup.ema?.sources ?? null,
    buffers: Object.entries(setup.buffers)
      .map(([name, buffer]) => [name, buffer.shape])
      .sort(),
  };
}

// ------------------------------------------------------------------------------------------------------------
// EMA shadows

/** Shadow copies of some model variables, updated as an exponential moving average after every step. */
export class EmaShadows {
  readonly sources: string[];
  readonly shadows: Record<string, tf.Variable> = {};
  private readonly blobNames = new Map<string, string>();
  private readonly architecture: { name: string; config: Record<string, unknown> };

  constructor(
    readonly spec: EmaSpec,
    private readonly model: TrainableModel,
  ) {
    const problems: string[] = [];
    const beta = spec.beta;
    if (typeof beta === 'number') {
      if (!(beta >= 0 && beta <= 1)) problems.push(`beta must be in [0, 1] (got ${beta})`);
    } else if (
      typeof beta !== 'object' ||
      !(beta.halfLifeImages > 0) ||
      (beta.rampup !== undefined && !(beta.rampup > 0))
    ) {
      problems.push('beta must be a number or { halfLifeImages > 0, rampup? > 0 }');
    }
    this.sources = [...(spec.variables ?? [])].sort();
    if (this.sources.length === 0) problems.push('no variables');
    const used = new Set<string>();
    for (const source of this.sources) {
      if (!Object.hasOwn(model.variables, source)) problems.push(`"${source}" is not a model variable`);
      const prefix = spec.stripPrefix;
      const name = prefix && source.startsWith(prefix) ? source.slice(prefix.length) : source;
      if (used.has(name)) problems.push(`two variables are named "${name}" in the EMA blob`);
      used.add(name);
      this.blobNames.set(source, name);
    }
    if (problems.length > 0) throw new Error(`training task init: ema: ${problems.join('; ')}`);
    this.architecture = spec.architecture ?? model.architecture;
    for (const source of this.sources) {
      this.shadows[source] = tf.tidy(() => tf.variable(tf.clone(model.variables[source]), false));
    }
  }

  /** Shadows ← the model's current variables (after the model was given other weights than its init). */
  resetFromModel(): void {
    tf.tidy(() => {
      for (const source of this.sources) this.shadows[source].assign(this.model.variables[source]);
    });
  }

  /** shadow ← variable + β·(shadow − variable) (StyleGAN's p.lerp(p_ema, β)). */
  update(beta: number): void {
    tf.tidy(() => {
      for (const source of this.sources) {
        const variable = this.model.variables[source];
        const shadow = this.shadows[source];
        shadow.assign(tf.add(variable, tf.mul(tf.sub(shadow, variable), tf.scalar(beta))));
      }
    });
  }

  /** The shadows under their blob names. */
  private byBlobName(): Record<string, tf.Variable> {
    const record: Record<string, tf.Variable> = {};
    for (const source of this.sources) record[this.blobNames.get(source)!] = this.shadows[source];
    return record;
  }

  encode(provenance: Record<string, unknown>): Buffer {
    return encodeWeights(variablesToWeights(this.byBlobName()), {
      architecture: this.architecture,
      provenance,
    });
  }

  load(blob: Uint8Array, source: string): void {
    const decoded = decodeWeights(blob, source);
    if (architectureKey(decoded.manifest.architecture) !== architectureKey(this.architecture)) {
      throw new WeightsMismatchError(
        `${source} is for ${architectureKey(decoded.manifest.architecture)}, the task's EMA is ` +
          architectureKey(this.architecture),
      );
    }
    assignWeights(this.byBlobName(), decoded.tensors);
  }

  dispose(): void {
    for (const shadow of Object.values(this.shadows)) shadow.dispose();
  }
}

// ------------------------------------------------------------------------------------------------------------
// The training-state blob (multi-phase tasks): every optimizer's state and the task's buffers

const TRAINING_STATE_ARCHITECTURE = 'fedsynth-training-state';

export interface TrainingState {
  /** Training steps completed. */
  step: number;
  /** By owning phase name. */
  optimizers: Map<string, OptimizerState>;
  buffers: WeightTensor[];
}

/** A fedsynth-weights blob: slots as `optimizer/<phase>/<slot>/<variable>`, buffers as `buffer/<name>`. */
export function encodeTrainingState(
  state: TrainingState,
  meta: { provenance?: Record<string, unknown>; createdAt?: string | Date } = {},
): Buffer {
  const tensors: WeightTensor[] = [];
  const optimizers: { name: string; spec: OptimizerSpec; step: number }[] = [];
  for (const [name, optimizerState] of state.optimizers) {
    optimizers.push({ name, spec: optimizerState.spec, step: optimizerState.step });
    for (const slot of optimizerState.slots)
      tensors.push({ ...slot, name: `optimizer/${name}/${slot.name}` });
  }
  for (const buffer of state.buffers) tensors.push({ ...buffer, name: `buffer/${buffer.name}` });
  return encodeWeights(tensors, {
    architecture: {
      name: TRAINING_STATE_ARCHITECTURE,
      config: { step: state.step, optimizers, buffers: state.buffers.map((buffer) => buffer.name) },
    },
    ...meta,
  });
}

/**
 * Decodes a training-state blob, or a single optimizer's blob (the single-phase format) as one optimizer named
 * `singleName`.
 */
export function decodeTrainingState(
  blob: Uint8Array,
  source = 'training state',
  singleName = 'main',
): TrainingState & { format: 'optimizer' | 'training-state' } {
  const { manifest, tensors } = decodeWeights(blob, source);
  if (manifest.architecture.name !== TRAINING_STATE_ARCHITECTURE) {
    const single = decodeOptimizerState(blob, source);
    return {
      format: 'optimizer',
      step: single.step,
      optimizers: new Map([[singleName, single]]),
      buffers: [],
    };
  }
  const config = manifest.architecture.config as {
    step?: unknown;
    optimizers?: { name: string; spec: OptimizerSpec; step: number }[];
    buffers?: string[];
  };
  if (!Number.isSafeInteger(config.step) || !Array.isArray(config.optimizers)) {
    throw new WeightsFormatError(source, 'training state without step or optimizers');
  }
  const optimizers = new Map<string, OptimizerState>();
  for (const { name, spec, step } of config.optimizers) {
    const prefix = `optimizer/${name}/`;
    const slots = tensors
      .filter((tensor) => tensor.name.startsWith(prefix))
      .map((tensor) => ({ ...tensor, name: tensor.name.slice(prefix.length) }));
    optimizers.set(name, { spec, step, slots });
  }
  const buffers = tensors
    .filter((tensor) => tensor.name.startsWith('buffer/'))
    .map((tensor) => ({ ...tensor, name: tensor.name.slice('buffer/'.length) }));
  return { format: 'training-state', step: config.step as number, optimizers, buffers };
}

/** The checkpoint's optimizer blob for the setup's current state. */
export function encodeSetupState(
  setup: PhaseSetup,
  completed: number,
  provenance: Record<string, unknown>,
): Buffer {
  if (setup.stateFormat === 'optimizer') {
    return encodeOptimizerState(setup.optimizers[0].optimizer.state(), { provenance });
  }
  return encodeTrainingState(
    {
      step: completed,
      optimizers: new Map(setup.optimizers.map(({ name, optimizer }) => [name, optimizer.state()])),
      buffers: variablesToWeights(setup.buffers),
    },
    { provenance },
  );
}

/** Restores optimizers and buffers from a checkpoint's optimizer blob; checks it is at `step`. */
export function loadSetupState(setup: PhaseSetup, blob: Uint8Array, step: number): void {
  const source = `checkpoint optimizer (step ${step})`;
  const state = decodeTrainingState(blob, source, setup.optimizers[0]?.name);
  if (state.format !== setup.stateFormat) {
    throw new WeightsFormatError(
      source,
      `a ${state.format} blob, the task needs a ${setup.stateFormat} blob`,
    );
  }
  if (state.step !== step) {
    throw new Error(`checkpoint optimizer state is at step ${state.step}, the checkpoint at ${step}`);
  }
  const expected = setup.optimizers.map(({ name }) => name).sort();
  const present = [...state.optimizers.keys()].sort();
  if (expected.join('\n') !== present.join('\n')) {
    throw new WeightsMismatchError(
      `${source}: optimizers [${present.join(', ')}], the task has [${expected.join(', ')}]`,
    );
  }
  for (const { name, optimizer } of setup.optimizers) optimizer.loadState(state.optimizers.get(name)!);
  if (Object.keys(setup.buffers).length > 0 || state.buffers.length > 0) {
    assignWeights(setup.buffers, state.buffers);
  }
}
