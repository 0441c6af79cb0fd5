// A tiny 1-D GAN for the runtime's multi-phase tests ('toy-gan'): G(z) = a·z + b against reals ~ N(2, 0.5²);
// D(x) = c + w₁x + w₂x², non-saturating logistic losses. Phases: 'D' (Adam), 'Dreg' (lazy R1 every `regEvery`
// steps, sharing D's Adam, a gradient of a gradient), 'G' (SGD with momentum). An EMA of G, and a buffer (a running
// mean of the fakes) updated from the averaged metrics in afterPhase. Importing registers the task.
import * as tf from '@tensorflow/tfjs';

import { createRng, type Rng } from '../../../util/rng.js';
import type { TrainableModel } from '../../model.js';
import type { OptimizerSpec } from '../optimizers.js';
import {
  registerTrainingTask,
  type PhaseOutcome,
  type PhaseResult,
  type PhaseSpec,
  type StepBatch,
  type TaskContext,
  type TaskInit,
  type TrainingTask,
} from '../registry.js';
import type { TrainingSpec } from '../spec.js';

import { TOY_FAULT_ENV } from './toy-task.js';

export const TOY_GAN_KIND = 'toy-gan';
export const TOY_GAN_MODULE = import.meta.url;

export interface ToyGanConfig {
  /** Lazy R1 interval (default 4); 0 = no Dreg phase. */
  regEvery?: number;
  regOffset?: number;
  /** R1 weight γ (default 1). */
  gamma?: number;
  /** EMA β per step (default 0.9); null = no EMA. */
  emaBeta?: number | null;
  /** Real examples (default 256). */
  datasetSize?: number;
  dOptimizer?: OptimizerSpec;
  gOptimizer?: OptimizerSpec;
  /** Faults: 'throw' at a step (also from TOY_FAULT_ENV), 'foreign-grad' (a G gradient in phase D). */
  fault?: { worker: number; step: number; mode: 'throw' | 'foreign-grad' };
}

const D_VARS = ['D/c', 'D/w'];
const G_VARS = ['G/a', 'G/b'];

export class ToyGanTask implements TrainingTask<ToyGanConfig> {
  private config!: ToyGanConfig;
  private workerIndex = 0;
  private model!: TrainableModel;
  private reals = new Float32Array(0);
  private fakeMean!: tf.Variable;

  init(spec: TrainingSpec<ToyGanConfig>, ctx: TaskContext): TaskInit {
    this.config = spec.config;
    this.workerIndex = ctx.workerIndex;
    const rng = ctx.initRng;
    const v = (values: number[]) => tf.variable(tf.tensor1d(values), true);
    const variables: Record<string, tf.Variable> = {
      'D/c': v([0]),
      'D/w': v([rng.normal(0, 0.1), rng.normal(0, 0.1)]),
      'G/a': v([1]),
      'G/b': v([0]),
    };
    this.fakeMean = tf.variable(tf.zeros([1]), false);
    this.model = {
      architecture: { name: TOY_GAN_KIND, config: {} },
      variables,
      dispose: () => Object.values(variables).forEach((variable) => variable.dispose()),
    };
    const regEvery = spec.config.regEvery ?? 4;
    const phases: PhaseSpec[] = [
      {
        name: 'D',
        variables: D_VARS,
        optimizer: spec.config.dOptimizer ?? {
          type: 'adamw',
          lr: 0.05,
          beta1: 0.5,
          beta2: 0.9,
          weightDecay: 0,
        },
        metrics: ['realScore', 'fakeScore'],
      },
    ];
    if (regEvery > 0) {
      phases.push({ name: 'Dreg', shareOptimizerWith: 'D', every: regEvery, offset: spec.config.regOffset });
    }
    phases.push({
      name: 'G',
      variables: G_VARS,
      optimizer: spec.config.gOptimizer ?? { type: 'sgd', lr: 0.05, momentum: 0.9 },
      metrics: ['a', 'b', 'fakeMean'],
    });
    const emaBeta = spec.config.emaBeta === undefined ? 0.9 : spec.config.emaBeta;
    return {
      model: this.model,
      phases,
      lossPhase: 'G',
      buffers: { fakeMean: this.fakeMean },
      ...(emaBeta !== null && {
        ema: {
          variables: G_VARS,
          beta: emaBeta,
          stripPrefix: 'G/',
          architecture: { name: 'toy-gan-generator', config: {} },
        },
      }),
    };
  }

  loadShard(): void {
    const size = this.config.datasetSize ?? 256;
    const rng = createRng('toy-gan-data');
    this.reals = Float32Array.from({ length: size }, () => rng.normal(2, 0.5));
  }

  private realBatch(batch: StepBatch): tf.Tensor1D {
    const all = Array.from(
      { length: batch.globalSize },
      () => this.reals[batch.stepSharedRng.int(this.reals.length)],
    );
    return tf.tensor1d(all.slice(batch.offset, batch.offset + batch.count));
  }

  private latents(rng: Rng, batch: StepBatch): tf.Tensor1D {
    const all = Array.from({ length: batch.globalSize }, () => rng.normal());
    return tf.tensor1d(all.slice(batch.offset, batch.offset + batch.count));
  }

  private d(x: tf.Tensor1D): tf.Tensor1D {
    const v = this.model.variables;
    const w = v['D/w'];
    return tf.add(
      tf.add(v['D/c'], tf.mul(x, tf.slice(w, [0], [1]))),
      tf.mul(tf.square(x), tf.slice(w, [1], [1])),
    ) as tf.Tensor1D;
  }

  private g(z: tf.Tensor1D): tf.Tensor1D {
    const v = this.model.variables;
    return tf.add(tf.mul(z, v['G/a']), v['G/b']) as tf.Tensor1D;
  }

  computePhase(phase: Readonly<PhaseSpec>, step: number, _rng: Rng, batch: StepBatch): PhaseResult {
    const fault = this.config.fault ?? faultFromEnv();
    if (fault?.worker === this.workerIndex && step >= fault.step && fault.mode === 'throw') {
      throw new Error(`toy fault: step ${step} on worker ${this.workerIndex}`);
    }
    const names = phase.name === 'G' ? G_VARS : D_VARS;
    const variables = names.map((name) => this.model.variables[name]);
    const metrics: Record<string, number> = {};
    const { value, grads, extra } = tf.tidy(() => {
      const reals = this.realBatch(batch);
      const z = this.latents(batch.sharedRng, batch);
      let extra: tf.Tensor[] = [];
      const { value, grads } = tf.variableGrads(() => {
        if (phase.name === 'D') {
          const realScore = this.d(reals);
          const fakeScore = this.d(this.g(z));
          extra = [tf.keep(tf.mean(realScore)), tf.keep(tf.mean(fakeScore))];
          return tf.add(
            tf.mean(tf.softplus(fakeScore)),
            tf.mean(tf.softplus(tf.neg(realScore))),
          ) as tf.Scalar;
        }
        if (phase.name === 'Dreg') {
          const slope = tf.grad((x) => tf.sum(this.d(x as tf.Tensor1D)))(reals);
          const gamma = this.config.gamma ?? 1;
          return tf.mul(tf.mean(tf.square(slope)), (gamma / 2) * (phase.every ?? 1)) as tf.Scalar;
        }
        const fakes = this.g(z);
        extra = [tf.keep(tf.mean(fakes))];
        return tf.mean(tf.softplus(tf.neg(this.d(fakes)))) as tf.Scalar;
      }, variables);
      return { value, grads, extra };
    });
    const loss = value.dataSync()[0]!;
    const scalars = extra.map((tensor) => tensor.dataSync()[0]!);
    tf.dispose([value, ...extra]);
    if (phase.name === 'D') [metrics.realScore, metrics.fakeScore] = scalars as [number, number];
    if (phase.name === 'G') {
      metrics.a = this.model.variables['G/a'].dataSync()[0]!;
      metrics.b = this.model.variables['G/b'].dataSync()[0]!;
      metrics.fakeMean = scalars[0]!;
    }
    const byName: Record<string, tf.Tensor> = {};
    names.forEach((name, i) => {
      // R1 does not depend on D's constant: variableGrads leaves it out (the runtime counts it as zero).
      const gradient = grads[variables[i].name];
      if (gradient) byName[name] = gradient;
    });
    if (fault?.worker === this.workerIndex && step >= fault.step && fault.mode === 'foreign-grad') {
      if (phase.name === 'D') byName['G/a'] = tf.zeros([1]);
    }
    return { loss, grads: byName, images: batch.count, metrics };
  }

  afterPhase(phase: Readonly<PhaseSpec>, _step: number, outcome: PhaseOutcome): void {
    if (phase.name !== 'G') return;
    tf.tidy(() => {
      this.fakeMean.assign(tf.add(tf.mul(this.fakeMean, 0.9), tf.scalar(0.1 * outcome.metrics.fakeMean!)));
    });
  }

  dispose(): void {
    this.fakeMean.dispose();
  }
}

function faultFromEnv(): ToyGanConfig['fault'] {
  const text = process.env[TOY_FAULT_ENV];
  return text ? (JSON.parse(text) as ToyGanConfig['fault']) : undefined;
}

registerTrainingTask<ToyGanConfig>(TOY_GAN_KIND, () => new ToyGanTask());
