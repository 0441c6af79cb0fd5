// Optimizers on a model's named variables, written on tf ops so the learning rate can change every step (the
// schedules below) and the state (per-variable slots + step) can be checkpointed and restored exactly.
//
// SGD follows torch.optim.SGD (coupled L2 weight decay, momentum buffer, Nesterov) as the paper's nnU-Net-style
// U-Net uses it; AdamW follows torch.optim.AdamW (decoupled weight decay, bias-corrected moments) as mmsegmentation's
// Swin/UperNet recipe uses it. Every update is one tf.tidy, so no tensor outlives a step except the slots.
import * as tf from '@tensorflow/tfjs';

import {
  decodeWeights,
  encodeWeights,
  variablesToWeights,
  WeightsFormatError,
  type WeightTensor,
} from '../weights/index.js';

export type LearningRateSchedule =
  /** lr0 throughout (after the optional warm-up). */
  | { type: 'constant'; warmupSteps?: number; warmupRatio?: number }
  /** lr0 · (1 − step/steps)^power (nnU-Net: power 0.9; mmsegmentation: 1.0), after the optional warm-up. */
  | { type: 'poly'; power?: number; warmupSteps?: number; warmupRatio?: number };

interface CommonOptimizerSpec {
  /** Base learning rate lr0. */
  lr: number;
  weightDecay?: number;
  /** Default { type: 'constant' }. */
  schedule?: LearningRateSchedule;
  /** Scale the (averaged) gradients so their global L2 norm is at most this (torch clip_grad_norm_). */
  clipNorm?: number;
}

export interface SgdSpec extends CommonOptimizerSpec {
  type: 'sgd';
  /** Default 0. */
  momentum?: number;
  /** Default false. */
  nesterov?: boolean;
}

export interface AdamWSpec extends CommonOptimizerSpec {
  type: 'adamw';
  /** Defaults 0.9, 0.999, 1e-8; weightDecay defaults to 0.01 as in torch. */
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

export type OptimizerSpec = SgdSpec | AdamWSpec;

/** The paper's U-Net (nnU-Net recipe): SGD, Nesterov momentum 0.99, weight decay 3e-5, poly LR (power 0.9), clip 12. */
export function paperUNetOptimizer(lr = 0.01): SgdSpec {
  return {
    type: 'sgd',
    lr,
    momentum: 0.99,
    nesterov: true,
    weightDecay: 3e-5,
    schedule: { type: 'poly', power: 0.9 },
    clipNorm: 12,
  };
}

/** The paper's Swin (mmsegmentation UperNet-Swin recipe): AdamW 6e-5, weight decay 0.01, linear warm-up, poly 1.0. */
export function paperSwinOptimizer(warmupSteps = 1500): AdamWSpec {
  return {
    type: 'adamw',
    lr: 6e-5,
    beta1: 0.9,
    beta2: 0.999,
    weightDecay: 0.01,
    schedule: { type: 'poly', power: 1, warmupSteps, warmupRatio: 1e-6 },
  };
}

/** The learning rate of 0-based step `step` of a run of `totalSteps`. */
export function learningRateAt(spec: OptimizerSpec, step: number, totalSteps: number): number {
  const schedule = spec.schedule ?? { type: 'constant' };
  let factor = 1;
  if (schedule.type === 'poly') {
    const progress = Math.min(Math.max(step, 0), totalSteps) / totalSteps;
    factor = Math.pow(1 - progress, schedule.power ?? 0.9);
  }
  const warmup = schedule.warmupSteps ?? 0;
  if (warmup > 0 && step < warmup) {
    // mmcv's linear warm-up: from lr·ratio at step 0 up to the regular lr at step `warmup`.
    const ratio = schedule.warmupRatio ?? 0;
    factor *= 1 - (1 - step / warmup) * (1 - ratio);
  }
  return spec.lr * factor;
}

export function validateOptimizerSpec(spec: OptimizerSpec): void {
  const problems: string[] = [];
  const positive = (name: string, value: number | undefined, allowZero: boolean) => {
    if (value === undefined) return;
    if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
      problems.push(`${name} must be ${allowZero ? '>= 0' : '> 0'} (got ${value})`);
    }
  };
  if (spec.type !== 'sgd' && spec.type !== 'adamw') {
    throw new Error(
      `optimizer: unknown type ${JSON.stringify((spec as { type: unknown }).type)} (sgd, adamw)`,
    );
  }
  positive('lr', spec.lr, true);
  if (spec.lr === undefined) problems.push('lr is required');
  positive('weightDecay', spec.weightDecay, true);
  positive('clipNorm', spec.clipNorm, false);
  if (spec.type === 'sgd') {
    if (spec.momentum !== undefined && !(spec.momentum >= 0 && spec.momentum < 1)) {
      problems.push(`momentum must be in [0, 1) (got ${spec.momentum})`);
    }
    if (spec.nesterov && !(spec.momentum! > 0)) problems.push('nesterov needs momentum > 0');
  } else {
    for (const [name, value] of [
      ['beta1', spec.beta1],
      ['beta2', spec.beta2],
    ] as const) {
      if (value !== undefined && !(value >= 0 && value < 1)) problems.push(`${name} must be in [0, 1)`);
    }
    positive('epsilon', spec.epsilon, false);
  }
  const schedule = spec.schedule;
  if (schedule !== undefined) {
    if (schedule.type !== 'constant' && schedule.type !== 'poly') {
      problems.push(`unknown schedule ${JSON.stringify((schedule as { type: unknown }).type)}`);
    }
    if (
      schedule.warmupSteps !== undefined &&
      !(Number.isSafeInteger(schedule.warmupSteps) && schedule.warmupSteps >= 0)
    ) {
      problems.push('warmupSteps must be an integer >= 0');
    }
  }
  if (problems.length > 0) throw new Error(`optimizer ${spec.type}: ${problems.join('; ')}`);
}

/** Slots are stored as `${slot}/${variable name}` tensors. */
export interface OptimizerState {
  spec: OptimizerSpec;
  /** Updates applied so far. */
  step: number;
  slots: WeightTensor[];
}

export interface Optimizer {
  readonly spec: OptimizerSpec;
  /** Updates applied so far (AdamW's bias correction uses step + 1). */
  readonly step: number;
  /** One update of every variable with `lr`; a variable missing from `grads` gets a zero gradient. */
  apply(grads: Record<string, tf.Tensor>, lr: number): void;
  /** A copy of the state, for a checkpoint. */
  state(): OptimizerState;
  /** Restores a state() of an optimizer of the same spec over the same variables. */
  loadState(state: OptimizerState): void;
  /** Frees the slots (the variables are the model's). */
  dispose(): void;
}

abstract class SlotOptimizer implements Optimizer {
  private updates = 0;
  protected readonly names: string[];
  protected readonly slots = new Map<string, Record<string, tf.Variable>>();

  constructor(
    readonly spec: OptimizerSpec,
    protected readonly variables: Record<string, tf.Variable>,
    slotNames: readonly string[],
  ) {
    validateOptimizerSpec(spec);
    this.names = Object.keys(variables).sort();
    for (const slot of slotNames) {
      const record: Record<string, tf.Variable> = {};
      for (const name of this.names) {
        record[name] = tf.tidy(() => tf.variable(tf.zerosLike(variables[name]), false));
      }
      this.slots.set(slot, record);
    }
  }

  get step(): number {
    return this.updates;
  }

  apply(grads: Record<string, tf.Tensor>, lr: number): void {
    for (const name of Object.keys(grads)) {
      if (!Object.hasOwn(this.variables, name))
        throw new Error(`optimizer: gradient for unknown variable "${name}"`);
    }
    if (!Number.isFinite(lr)) throw new Error(`optimizer: learning rate ${lr} at step ${this.updates}`);
    tf.tidy(() => {
      let gradients = this.names.map((name) => grads[name] ?? tf.zerosLike(this.variables[name]));
      if (this.spec.clipNorm !== undefined) gradients = clipByGlobalNorm(gradients, this.spec.clipNorm);
      this.names.forEach((name, index) => this.update(name, this.variables[name], gradients[index], lr));
    });
    this.updates += 1;
  }

  protected abstract update(name: string, variable: tf.Variable, gradient: tf.Tensor, lr: number): void;

  protected slot(slot: string, name: string): tf.Variable {
    return this.slots.get(slot)![name];
  }

  state(): OptimizerState {
    const tensors: Record<string, tf.Tensor> = {};
    for (const [slot, record] of this.slots) {
      for (const name of this.names) tensors[`${slot}/${name}`] = record[name];
    }
    return { spec: structuredClone(this.spec), step: this.updates, slots: variablesToWeights(tensors) };
  }

  loadState(state: OptimizerState): void {
    if (state.spec.type !== this.spec.type) {
      throw new Error(`optimizer: cannot load ${state.spec.type} state into ${this.spec.type}`);
    }
    if (!Number.isSafeInteger(state.step) || state.step < 0)
      throw new Error(`optimizer: bad state step ${state.step}`);
    const byName = new Map(state.slots.map((tensor) => [tensor.name, tensor]));
    const expected = [...this.slots.keys()].flatMap((slot) => this.names.map((name) => `${slot}/${name}`));
    const missing = expected.filter((key) => !byName.has(key));
    const unexpected = [...byName.keys()].filter((key) => !expected.includes(key));
    if (missing.length > 0 || unexpected.length > 0) {
      throw new Error(
        `optimizer: state does not fit the model (missing: ${missing.join(', ') || 'none'}; ` +
          `unexpected: ${unexpected.join(', ') || 'none'})`,
      );
    }
    for (const [slot, record] of this.slots) {
      for (const name of this.names) {
        const tensor = byName.get(`${slot}/${name}`)!;
        const variable = record[name];
        if (tensor.shape.join(',') !== variable.shape.join(',') || tensor.dtype !== variable.dtype) {
          throw new Error(
            `optimizer: slot ${slot}/${name} is [${tensor.shape}] but the variable is [${variable.shape}]`,
          );
        }
      }
    }
    tf.tidy(() => {
      for (const [slot, record] of this.slots) {
        for (const name of this.names) {
          const tensor = byName.get(`${slot}/${name}`)!;
          record[name].assign(tf.tensor(tensor.data.slice(), tensor.shape, tensor.dtype));
        }
      }
    });
    this.updates = state.step;
  }

  dispose(): void {
    for (const record of this.slots.values())
      for (const variable of Object.values(record)) variable.dispose();
    this.slots.clear();
  }
}

/** torch.nn.utils.clip_grad_norm_: scale by min(1, max / (‖g‖ + 1e-6)). Call inside tf.tidy. */
export function clipByGlobalNorm(gradients: tf.Tensor[], maxNorm: number): tf.Tensor[] {
  if (gradients.length === 0) return gradients;
  const squares = gradients.map((gradient) => tf.sum(tf.square(gradient)));
  const norm = tf.sqrt(tf.addN(squares));
  const scale = tf.minimum(tf.scalar(1), tf.div(tf.scalar(maxNorm), tf.add(norm, tf.scalar(1e-6))));
  return gradients.map((gradient) => tf.mul(gradient, scale));
}

class Sgd extends SlotOptimizer {
  private readonly momentum: number;
  private readonly nesterov: boolean;
  private readonly weightDecay: number;

  constructor(spec: SgdSpec, variables: Record<string, tf.Variable>) {
    super(spec, variables, (spec.momentum ?? 0) > 0 ? ['momentum'] : []);
    this.momentum = spec.momentum ?? 0;
    this.nesterov = spec.nesterov ?? false;
    this.weightDecay = spec.weightDecay ?? 0;
  }

  protected update(name: string, variable: tf.Variable, gradient: tf.Tensor, lr: number): void {
    let g = gradient;
    if (this.weightDecay > 0) g = tf.add(g, tf.mul(variable, tf.scalar(this.weightDecay)));
    if (this.momentum > 0) {
      const buffer = this.slot('momentum', name);
      const mu = tf.scalar(this.momentum);
      buffer.assign(tf.add(tf.mul(buffer, mu), g));
      g = this.nesterov ? tf.add(g, tf.mul(buffer, mu)) : buffer;
    }
    variable.assign(tf.sub(variable, tf.mul(g, tf.scalar(lr))));
  }
}

class AdamW extends SlotOptimizer {
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;
  private readonly weightDecay: number;

  constructor(spec: AdamWSpec, variables: Record<string, tf.Variable>) {
    super(spec, variables, ['m', 'v']);
    this.beta1 = spec.beta1 ?? 0.9;
    this.beta2 = spec.beta2 ?? 0.999;
    this.epsilon = spec.epsilon ?? 1e-8;
    this.weightDecay = spec.weightDecay ?? 0.01;
  }

  protected update(name: string, variable: tf.Variable, gradient: tf.Tensor, lr: number): void {
    const t = this.step + 1;
    const m = this.slot('m', name);
    const v = this.slot('v', name);
    let p: tf.Tensor = variable;
    if (this.weightDecay > 0) p = tf.mul(p, tf.scalar(1 - lr * this.weightDecay));
    m.assign(tf.add(tf.mul(m, tf.scalar(this.beta1)), tf.mul(gradient, tf.scalar(1 - this.beta1))));
    v.assign(
      tf.add(tf.mul(v, tf.scalar(this.beta2)), tf.mul(tf.square(gradient), tf.scalar(1 - this.beta2))),
    );
    const stepSize = lr / (1 - Math.pow(this.beta1, t));
    const denominator = tf.add(
      tf.div(tf.sqrt(v), tf.scalar(Math.sqrt(1 - Math.pow(this.beta2, t)))),
      tf.scalar(this.epsilon),
    );
    variable.assign(tf.sub(p, tf.mul(tf.div(m, denominator), tf.scalar(stepSize))));
  }
}

export function createOptimizer(spec: OptimizerSpec, variables: Record<string, tf.Variable>): Optimizer {
  switch (spec.type) {
    case 'sgd':
      return new Sgd(spec, variables);
    case 'adamw':
      return new AdamW(spec, variables);
    default:
      throw new Error(
        `optimizer: unknown type ${JSON.stringify((spec as { type: unknown }).type)} (sgd, adamw)`,
      );
  }
}

const OPTIMIZER_ARCHITECTURE = 'fedsynth-optimizer';

/** The state as a fedsynth-weights blob (verified on read like any weights): slots as tensors, spec and step in
 * the architecture config. */
export function encodeOptimizerState(
  state: OptimizerState,
  meta: { provenance?: Record<string, unknown>; createdAt?: string | Date } = {},
): Buffer {
  return encodeWeights(state.slots, {
    architecture: { name: OPTIMIZER_ARCHITECTURE, config: { spec: state.spec, step: state.step } },
    ...meta,
  });
}

export function decodeOptimizerState(blob: Uint8Array, source = 'optimizer state'): OptimizerState {
  const { manifest, tensors } = decodeWeights(blob, source);
  const config = manifest.architecture.config as { spec?: OptimizerSpec; step?: unknown };
  if (manifest.architecture.name !== OPTIMIZER_ARCHITECTURE || typeof config.spec !== 'object') {
    throw new WeightsFormatError(
      source,
      `not an optimizer state (architecture '${manifest.architecture.name}')`,
    );
  }
  if (!Number.isSafeInteger(config.step))
    throw new WeightsFormatError(source, 'optimizer state without a step');
  return { spec: config.spec, step: config.step as number, slots: tensors };
}
