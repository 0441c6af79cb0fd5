// A small conv net training task for the runtime's tests and benchmarks ('toy-conv'): `layers` 3×3 convolutions
// (ReLU between) on synthetic per-pixel classification data, variables from raw tf.variable. Importing this module
// registers the task; TOY_TASK_MODULE is its URL for spec.taskModules. Faults can be injected to test supervision.
import * as tf from '@tensorflow/tfjs';

import { createRng, type Rng } from '../../../util/rng.js';
import type { TrainableModel } from '../../model.js';
import type { OptimizerSpec } from '../optimizers.js';
import {
  registerTrainingTask,
  type LossAndGrads,
  type StepBatch,
  type TaskContext,
  type TaskInit,
  type TrainingTask,
} from '../registry.js';
import type { TrainingSpec } from '../spec.js';

export const TOY_TASK_KIND = 'toy-conv';
export const TOY_TASK_MODULE = import.meta.url;

export type ToyFaultMode = 'throw' | 'exit' | 'hang' | 'leak' | 'init-throw' | 'init-diverge';

export interface ToyConfig {
  /** Image side (default 8). */
  size?: number;
  /** Input channels (default 2). */
  channels?: number;
  /** Hidden channels (default 8). */
  hidden?: number;
  /** Conv layers (default 2): layers - 1 hidden ones, then the classifier. */
  layers?: number;
  /** Output classes (default 2). */
  classes?: number;
  /** Examples in the data set (default 64). */
  datasetSize?: number;
  /** 'global' (default): one global batch per step from the shared RNG, worker w takes its part (independent of
   * the worker count). 'shard': worker w samples its part from the examples i with i % workers == w. */
  sampling?: 'global' | 'shard';
  optimizer?: OptimizerSpec;
  /** An extra variable of this many parameters with a cheap gradient (all-reduce measurements). */
  extraParameters?: number;
  /** Sleep this long in every step (to make cancellation timing testable). */
  stepDelayMs?: number;
  fault?: { worker: number; step: number; mode: ToyFaultMode };
}

/** Set in a worker's env (outside the spec, so a resumed run has the same spec hash) to inject a fault. */
export const TOY_FAULT_ENV = 'FEDSYNTH_TOY_FAULT';

function faultFromEnv(): ToyConfig['fault'] {
  const text = process.env[TOY_FAULT_ENV];
  return text ? (JSON.parse(text) as ToyConfig['fault']) : undefined;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function glorot(rng: Rng, shape: number[], fanIn: number, fanOut: number): tf.Tensor {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < values.length; i++) values[i] = rng.uniform(-limit, limit);
  return tf.tensor(values, shape);
}

export class ToyConvTask implements TrainingTask<ToyConfig> {
  private config!: Required<Omit<ToyConfig, 'optimizer' | 'fault'>> & Pick<ToyConfig, 'fault' | 'optimizer'>;
  private workerIndex = 0;
  private model!: TrainableModel;
  private examples = new Map<number, { image: Float32Array; label: Int32Array }>();
  private shardIndices: number[] = [];
  private leaked: tf.Tensor[] = [];

  init(spec: TrainingSpec<ToyConfig>, ctx: TaskContext): TaskInit {
    const c = spec.config;
    this.config = {
      size: c.size ?? 8,
      channels: c.channels ?? 2,
      hidden: c.hidden ?? 8,
      layers: c.layers ?? 2,
      classes: c.classes ?? 2,
      datasetSize: c.datasetSize ?? 64,
      sampling: c.sampling ?? 'global',
      extraParameters: c.extraParameters ?? 0,
      stepDelayMs: c.stepDelayMs ?? 0,
      fault: c.fault ?? faultFromEnv(),
      optimizer: c.optimizer,
    };
    this.workerIndex = ctx.workerIndex;
    const { fault } = this.config;
    if (fault?.worker === ctx.workerIndex && fault.mode === 'init-throw') {
      throw new Error(`toy fault: init of worker ${ctx.workerIndex}`);
    }
    const { channels, hidden, layers, classes, extraParameters } = this.config;
    const rng =
      fault?.worker === ctx.workerIndex && fault.mode === 'init-diverge' ? ctx.initRng.fork(1) : ctx.initRng;
    const variables: Record<string, tf.Variable> = {};
    for (let layer = 0; layer < layers; layer++) {
      const cin = layer === 0 ? channels : hidden;
      const cout = layer === layers - 1 ? classes : hidden;
      variables[`conv${layer + 1}/kernel`] = tf.variable(
        glorot(rng, [3, 3, cin, cout], 9 * cin, 9 * cout),
        true,
      );
      variables[`conv${layer + 1}/bias`] = tf.variable(tf.zeros([cout]), true);
    }
    if (extraParameters > 0) {
      variables['extra/weights'] = tf.variable(glorot(rng, [extraParameters], extraParameters, 1), true);
    }
    const architecture = {
      name: TOY_TASK_KIND,
      config: { size: this.config.size, channels, hidden, layers, classes, extraParameters },
    };
    this.model = {
      architecture,
      variables,
      dispose: () => Object.values(variables).forEach((variable) => variable.dispose()),
    };
    const optimizer: OptimizerSpec = this.config.optimizer ?? {
      type: 'sgd',
      lr: 0.05,
      momentum: 0.9,
      nesterov: true,
      schedule: { type: 'poly', power: 0.9 },
    };
    return { model: this.model, optimizer };
  }

  private example(index: number): { image: Float32Array; label: Int32Array } {
    let example = this.examples.get(index);
    if (!example) {
      const { size, channels, classes } = this.config;
      const rng = createRng('toy-data').fork(index);
      const pixels = size * size;
      const image = new Float32Array(pixels * channels);
      for (let i = 0; i < image.length; i++) image[i] = rng.normal();
      const label = new Int32Array(pixels);
      for (let p = 0; p < pixels; p++) {
        const score = image[p * channels] + (channels > 1 ? 0.5 * image[p * channels + 1] : 0);
        label[p] = Math.min(classes - 1, Math.floor(((Math.tanh(score) + 1) / 2) * classes));
      }
      example = { image, label };
      this.examples.set(index, example);
    }
    return example;
  }

  loadShard(workerIndex: number, workerCount: number): void {
    const { datasetSize, sampling } = this.config;
    this.shardIndices = [];
    for (let i = 0; i < datasetSize; i++) {
      if (sampling === 'global' || i % workerCount === workerIndex) {
        this.shardIndices.push(i);
        this.example(i);
      }
    }
  }

  computeLossAndGrads(step: number, rng: Rng, batch: StepBatch): LossAndGrads {
    const { fault, size, channels, classes, datasetSize, sampling, stepDelayMs } = this.config;
    if (fault?.worker === this.workerIndex && step >= fault.step) {
      if (fault.mode === 'throw') throw new Error(`toy fault: step ${step} on worker ${this.workerIndex}`);
      if (fault.mode === 'exit') process.exit(1);
      if (fault.mode === 'hang') for (;;) sleep(1000);
      if (fault.mode === 'leak') this.leaked.push(tf.scalar(step));
    }
    if (stepDelayMs > 0) sleep(stepDelayMs);
    let indices: number[];
    if (sampling === 'global') {
      const all = Array.from({ length: batch.globalSize }, () => batch.sharedRng.int(datasetSize));
      indices = all.slice(batch.offset, batch.offset + batch.count);
    } else {
      indices = Array.from(
        { length: batch.count },
        () => this.shardIndices[rng.int(this.shardIndices.length)],
      );
    }
    const pixels = size * size;
    const images = new Float32Array(indices.length * pixels * channels);
    const labels = new Int32Array(indices.length * pixels);
    indices.forEach((index, i) => {
      const example = this.example(index);
      images.set(example.image, i * pixels * channels);
      labels.set(example.label, i * pixels);
    });
    const names = Object.keys(this.model.variables);
    const variables = names.map((name) => this.model.variables[name]);
    const { value, grads } = tf.tidy(() => {
      const x = tf.tensor4d(images, [indices.length, size, size, channels]);
      const target = tf.oneHot(tf.tensor1d(labels, 'int32'), classes);
      return tf.variableGrads(() => this.loss(x, target), variables);
    });
    const loss = value.dataSync()[0];
    value.dispose();
    const byName: Record<string, tf.Tensor> = {};
    names.forEach((name, i) => {
      byName[name] = grads[variables[i].name];
    });
    return { loss, grads: byName, images: indices.length };
  }

  private loss(x: tf.Tensor4D, target: tf.Tensor): tf.Scalar {
    const v = this.model.variables;
    const { layers, classes, extraParameters } = this.config;
    let h: tf.Tensor4D = x;
    for (let layer = 1; layer <= layers; layer++) {
      h = tf.add(tf.conv2d(h, v[`conv${layer}/kernel`] as tf.Tensor4D, 1, 'same'), v[`conv${layer}/bias`]);
      if (layer < layers) h = tf.relu(h);
    }
    const logProbs = tf.logSoftmax(tf.reshape(h, [-1, classes]));
    let loss = tf.neg(tf.mean(tf.sum(tf.mul(target, logProbs), -1))) as tf.Scalar;
    if (extraParameters > 0)
      loss = tf.add(loss, tf.mul(tf.mean(tf.square(v['extra/weights'])), 1e-3)) as tf.Scalar;
    return loss;
  }

  dispose(): void {
    tf.dispose(this.leaked);
    this.examples.clear();
  }
}

registerTrainingTask<ToyConfig>(TOY_TASK_KIND, () => new ToyConvTask());
