import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../backend/index.js';
import { decodeWeights } from '../weights/index.js';

import { GradientExchange, SharedBarrier, createControlBuffer, exchangeBufferBytes } from './allreduce.js';
import { buildPhaseSetup, decodeTrainingState, encodeTrainingState } from './phases.js';
import type { TrainingProgress } from './progress.js';
import { emaBetaAt, phaseRunsAt, type TaskInit } from './registry.js';
import { startTraining, type TrainingResult } from './run.js';
import type { TrainingSpec } from './spec.js';
import { TOY_GAN_KIND, TOY_GAN_MODULE, type ToyGanConfig } from './testing/toy-gan-task.js';
import {
  maxAbsDifference,
  RecordingWorkerFactory,
  removeTempDirs,
  tempCheckpointDir,
  tensorsOf,
} from './testing/training-test-helpers.js';

after(removeTempDirs);

function ganSpec(
  overrides: Partial<Omit<TrainingSpec<ToyGanConfig>, 'config'>> & { config?: ToyGanConfig } = {},
): TrainingSpec<ToyGanConfig> {
  return {
    kind: TOY_GAN_KIND,
    config: {},
    seed: 11,
    steps: 12,
    batchSize: 6,
    checkpointEvery: 0,
    checkpointDir: overrides.checkpointDir ?? tempCheckpointDir(),
    workers: 1,
    backend: 'wasm',
    taskModules: [TOY_GAN_MODULE],
    ...overrides,
  };
}

function assertMemoryFlat(result: TrainingResult): void {
  for (const report of result.workers) {
    assert.equal(
      report.tensors.atEnd,
      report.tensors.afterFirstStep,
      `worker ${report.worker} leaked tensors`,
    );
  }
}

const quiet = { logger: () => {} };

describe('multi-phase training (toy 1-D GAN: D, lazy R1 sharing D’s Adam, G; EMA of G; a buffer)', () => {
  it('runs the phases in order with lazy skipping, reports per-phase losses and metrics, keeps memory flat', async () => {
    const events: TrainingProgress[] = [];
    const result = await startTraining(ganSpec({ steps: 9, config: { regEvery: 4 } }), {
      ...quiet,
      onProgress: (p) => events.push(p),
    }).done;
    assert.equal(result.steps, 9);
    assertMemoryFlat(result);
    assert.deepEqual(
      events.map((p) => Object.keys(p.phases!)),
      events.map((p) => (phaseRunsAt({ every: 4 }, p.step - 1) ? ['D', 'Dreg', 'G'] : ['D', 'G'])),
    );
    for (const p of events) {
      // The loss phase is G: the run's loss is G's.
      assert.equal(p.loss, p.phases!.G!.loss);
      assert.equal(p.lr, 0.05);
      assert.equal(p.images, 6);
      assert.deepEqual(Object.keys(p.phases!.D!.metrics).sort(), ['fakeScore', 'realScore']);
      assert.ok(Number.isFinite(p.phases!.D!.loss) && p.phases!.D!.loss > 0);
      if (p.phases!.Dreg) assert.deepEqual(p.phases!.Dreg.metrics, {});
    }
    assert.deepEqual(
      result.losses,
      events.map((p) => p.phases!.G!.loss),
    );
    // D and G both moved away from their initial values.
    const first = events[0]!.phases!.G!.metrics;
    const last = events.at(-1)!.phases!.G!.metrics;
    assert.notEqual(first.b, last.b);
    assert.ok(result.emaWeightsBlob, 'EMA blob returned');
  });

  it('keeps one optimizer state per phase (Dreg shares D’s) and the buffers in the checkpoint', async () => {
    const steps = 10;
    const result = await startTraining(ganSpec({ steps, config: { regEvery: 3, regOffset: 1 } }), quiet).done;
    const state = decodeTrainingState(result.optimizerBlob);
    assert.equal(state.format, 'training-state');
    assert.equal(state.step, steps);
    assert.deepEqual([...state.optimizers.keys()], ['D', 'G']);
    const regSteps = Array.from({ length: steps }, (_, s) => s).filter((s) => s % 3 === 1).length;
    const d = state.optimizers.get('D')!;
    const g = state.optimizers.get('G')!;
    assert.equal(d.step, steps + regSteps, 'D: one update per D step and per Dreg step');
    assert.equal(g.step, steps);
    assert.equal(d.spec.type, 'adamw');
    assert.equal(g.spec.type, 'sgd');
    assert.deepEqual(d.slots.map((t) => t.name).sort(), ['m/D/c', 'm/D/w', 'v/D/c', 'v/D/w']);
    assert.deepEqual(g.slots.map((t) => t.name).sort(), ['momentum/G/a', 'momentum/G/b']);
    assert.deepEqual(
      state.buffers.map((t) => t.name),
      ['fakeMean'],
    );
    assert.notEqual(state.buffers[0]!.data[0], 0);
  });

  it('2 workers: bit-identical replicas (weights, EMA, buffers), lazy phases skipped together, equal to 1 worker', async () => {
    for (const batchSize of [6, 5]) {
      const config = { regEvery: 3 };
      const one = await startTraining(ganSpec({ config, batchSize, workers: 1 }), quiet).done;
      const events: TrainingProgress[] = [];
      const two = await startTraining(ganSpec({ config, batchSize, workers: 2 }), {
        ...quiet,
        onProgress: (p) => events.push(p),
      }).done;
      assert.equal(two.workers[0]!.weightsChecksum, two.workers[1]!.weightsChecksum, 'replicas differ');
      assertMemoryFlat(one);
      assertMemoryFlat(two);
      assert.deepEqual(
        events.map((p) => 'Dreg' in p.phases!),
        events.map((p) => (p.step - 1) % 3 === 0),
      );
      one.losses.forEach((loss, step) =>
        assert.ok(Math.abs(loss - two.losses[step]!) < 1e-5, `step ${step}: ${loss} vs ${two.losses[step]}`),
      );
      assert.ok(maxAbsDifference(tensorsOf(one.weightsBlob), tensorsOf(two.weightsBlob)) < 1e-5);
      assert.ok(maxAbsDifference(tensorsOf(one.emaWeightsBlob!), tensorsOf(two.emaWeightsBlob!)) < 1e-5);
      const oneState = decodeTrainingState(one.optimizerBlob);
      const twoState = decodeTrainingState(two.optimizerBlob);
      assert.equal(oneState.optimizers.get('D')!.step, twoState.optimizers.get('D')!.step);
      assert.ok(maxAbsDifference(oneState.buffers, twoState.buffers) < 1e-5);
    }
  });

  it('resumes after a crash exactly: weights, EMA, every optimizer state and the buffers', async () => {
    const config = { regEvery: 4 };
    const straight = await startTraining(ganSpec({ config, workers: 2 }), quiet).done;

    const dir = tempCheckpointDir();
    const spec = ganSpec({ config, workers: 2, checkpointEvery: 5, checkpointDir: dir });
    const crashing = new RecordingWorkerFactory({ worker: 1, step: 7, mode: 'throw' });
    await assert.rejects(
      startTraining(spec, { ...quiet, workerFactory: crashing }).done,
      /worker 1 failed at step 7/,
    );
    assert.ok(crashing.allExited);
    assert.deepEqual(readdirSync(dir).sort(), [
      'ckpt-000000005.ema',
      'ckpt-000000005.json',
      'ckpt-000000005.optimizer',
      'ckpt-000000005.weights',
    ]);

    const resumed = await startTraining(spec, { ...quiet, resume: true }).done;
    assert.equal(resumed.resumedFromStep, 5);
    assert.deepEqual(tensorsOf(resumed.weightsBlob), tensorsOf(straight.weightsBlob));
    assert.deepEqual(tensorsOf(resumed.emaWeightsBlob!), tensorsOf(straight.emaWeightsBlob!));
    assert.deepEqual(tensorsOf(resumed.optimizerBlob), tensorsOf(straight.optimizerBlob));
    assert.deepEqual(resumed.losses, straight.losses);
    assert.ok(readdirSync(dir).includes('ckpt-000000012.ema'));
  });

  it('the EMA equals a direct computation from the weights of every step', async () => {
    const beta = 0.8;
    const events: TrainingProgress[] = [];
    const result = await startTraining(ganSpec({ steps: 10, config: { emaBeta: beta } }), {
      ...quiet,
      onProgress: (p) => events.push(p),
    }).done;
    // phases.G.metrics at step s are G's weights before that step's G update: w_s (w_0 initial).
    const trajectory = events.map((p) => [p.phases!.G!.metrics.a!, p.phases!.G!.metrics.b!]);
    const final = Object.fromEntries(tensorsOf(result.weightsBlob).map((t) => [t.name, t.data[0]!]));
    trajectory.push([final['G/a']!, final['G/b']!]);
    let ema = trajectory[0]!;
    for (const w of trajectory.slice(1)) ema = ema.map((e, i) => beta * e + (1 - beta) * w[i]!);
    const decoded = decodeWeights(result.emaWeightsBlob!);
    assert.deepEqual(decoded.manifest.architecture, { name: 'toy-gan-generator', config: {} });
    const blob = Object.fromEntries(decoded.tensors.map((t) => [t.name, t.data[0]!]));
    assert.deepEqual(Object.keys(blob).sort(), ['a', 'b']);
    assert.ok(Math.abs(blob.a! - ema[0]!) < 1e-5, `a: ${blob.a} vs ${ema[0]}`);
    assert.ok(Math.abs(blob.b! - ema[1]!) < 1e-5, `b: ${blob.b} vs ${ema[1]}`);
    assert.notEqual(blob.b, final['G/b'], 'the EMA lags the weights');
  });

  it('fails a phase that returns a gradient outside its variables, naming the phase', async () => {
    await assert.rejects(
      startTraining(ganSpec({ config: { fault: { worker: 0, step: 2, mode: 'foreign-grad' } } }), quiet).done,
      /worker 0 failed at step 2: task returned a gradient for "G\/a", which is not a variable of phase 'D'/,
    );
  });
});

describe('phase setup (no workers)', () => {
  before(() => selectBackend({ prefer: 'wasm' }));

  function model() {
    const variables = {
      'D/w': tf.variable(tf.zeros([2])),
      'G/w': tf.variable(tf.ones([3])),
    };
    return {
      architecture: { name: 'm', config: {} },
      variables,
      dispose: () => Object.values(variables).forEach((v) => v.dispose()),
    };
  }
  const adam = { type: 'adamw' as const, lr: 0.01, weightDecay: 0 };
  const task = { computePhase: () => ({ loss: 0, grads: {}, images: 1 }) };

  it('rejects inconsistent phases with every problem listed', () => {
    const m = model();
    after(() => m.dispose());
    const init: TaskInit = {
      model: m,
      phases: [
        { name: 'D', variables: ['D/w', 'X'], optimizer: adam },
        { name: 'D', variables: ['G/w'], optimizer: adam, shareOptimizerWith: 'D' },
        { name: 'R', shareOptimizerWith: 'nope', every: 0 },
        { name: 'S', variables: ['G/w'], shareOptimizerWith: 'D' },
      ],
      lossPhase: 'R',
    };
    assert.throws(
      () => buildPhaseSetup(init, task, undefined),
      (error: Error) =>
        [
          /"X" is not a model variable/,
          /name used twice/,
          /exactly one of optimizer and shareOptimizerWith/,
          /'nope' is not an earlier phase/,
          /every must be an integer >= 1/,
          /must train the same variables/,
          /lossPhase 'R' must run every step/,
        ].every((pattern) => pattern.test(error.message)),
    );
    assert.throws(
      () =>
        buildPhaseSetup(
          { model: m, phases: [{ name: 'G', variables: ['G/w'], optimizer: adam }] },
          task,
          adam,
        ),
      /spec.optimizer overrides the optimizer of single-phase tasks only/,
    );
    assert.throws(
      () =>
        buildPhaseSetup(
          { model: m, phases: [{ name: 'G', variables: ['G/w'], optimizer: adam }] },
          {},
          undefined,
        ),
      /must implement computePhase/,
    );
  });

  it('builds shared optimizers, the exchange length and the formats; the EMA starts at the weights', () => {
    const m = model();
    after(() => m.dispose());
    const setup = buildPhaseSetup(
      {
        model: m,
        phases: [
          { name: 'D', variables: ['D/w'], optimizer: adam, metrics: ['x'] },
          { name: 'Dreg', shareOptimizerWith: 'D', every: 16 },
          { name: 'G', variables: ['G/w'], optimizer: { type: 'sgd', lr: 0.1 } },
        ],
        ema: { variables: ['G/w'], beta: 0.5, stripPrefix: 'G/' },
      },
      task,
      undefined,
    );
    after(() => setup.dispose());
    assert.deepEqual(
      setup.phases.map((p) => [p.name, p.layout.names, p.optimizerOwner]),
      [
        ['D', ['D/w'], 'D'],
        ['Dreg', ['D/w'], 'D'],
        ['G', ['G/w'], 'G'],
      ],
    );
    assert.equal(setup.phases[0]!.optimizer, setup.phases[1]!.optimizer);
    assert.equal(setup.exchangeLength, 3, 'G: 3 values; D: 2 + 1 metric');
    assert.equal(setup.stateFormat, 'training-state');
    assert.equal(setup.lossPhase.name, 'D');
    assert.deepEqual(Array.from(setup.ema!.shadows['G/w']!.dataSync()), [1, 1, 1]);
    setup.ema!.update(0.5);
    assert.deepEqual(Array.from(setup.ema!.shadows['G/w']!.dataSync()), [1, 1, 1]);
    m.variables['G/w'].assign(tf.fill([3], 3));
    setup.ema!.update(0.5);
    assert.deepEqual(Array.from(setup.ema!.shadows['G/w']!.dataSync()), [2, 2, 2]);

    const single = buildPhaseSetup(
      { model: m, optimizer: adam },
      { computeLossAndGrads: task.computePhase },
      undefined,
    );
    after(() => single.dispose());
    assert.equal(single.legacy, true);
    assert.equal(single.stateFormat, 'optimizer');
    assert.equal(single.exchangeLength, 5);
  });

  it('encodes and decodes the training state', () => {
    const blob = encodeTrainingState({
      step: 3,
      optimizers: new Map([
        [
          'D',
          {
            spec: { type: 'sgd', lr: 1 },
            step: 4,
            slots: [{ name: 'momentum/D/w', shape: [1], dtype: 'float32', data: Float32Array.of(2) }],
          },
        ],
      ]),
      buffers: [{ name: 'pl/mean', shape: [], dtype: 'float32', data: Float32Array.of(5) }],
    });
    const state = decodeTrainingState(blob);
    assert.equal(state.step, 3);
    assert.equal(state.optimizers.get('D')!.step, 4);
    assert.equal(state.optimizers.get('D')!.slots[0]!.name, 'momentum/D/w');
    assert.equal(state.buffers[0]!.name, 'pl/mean');
  });

  it('computes StyleGAN2’s EMA β from a half-life in images with ramp-up', () => {
    assert.equal(emaBetaAt(0.999, 7, 32), 0.999);
    // ema_kimg 10: β = 0.5^(32 / 10000).
    assert.ok(Math.abs(emaBetaAt({ halfLifeImages: 10_000 }, 5, 32) - Math.pow(0.5, 32 / 10_000)) < 1e-15);
    // Ramp-up 0.05: at step 0 nothing is seen yet, the EMA takes the weights (β = 0).
    assert.equal(emaBetaAt({ halfLifeImages: 10_000, rampup: 0.05 }, 0, 32), 0);
    const halfLife = 100 * 32 * 0.05;
    assert.ok(
      Math.abs(emaBetaAt({ halfLifeImages: 10_000, rampup: 0.05 }, 100, 32) - Math.pow(0.5, 32 / halfLife)) <
        1e-15,
    );
  });

  it('the all-reduce reduces a prefix of the slots when asked', () => {
    const workers = 1;
    const exchange = new GradientExchange(
      new SharedArrayBuffer(exchangeBufferBytes(4, workers)),
      4,
      workers,
      0,
      new SharedBarrier(new Int32Array(createControlBuffer(workers)), workers),
    );
    exchange.ownSlot.set([1, 2, 3, 4]);
    exchange.result.fill(-1);
    exchange.reduce(0, 1, undefined, 2);
    assert.deepEqual(Array.from(exchange.result), [1, 2, -1, -1]);
    assert.throws(() => exchange.reduce(0, 1, undefined, 5), /cannot reduce 5 of 4/);
  });
});
