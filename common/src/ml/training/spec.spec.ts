// Spec validation, the spec hash, the batch split, progress numbers and the task registry.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ProgressTracker } from './progress.js';
import {
  createTrainingTask,
  registerTrainingTask,
  registeredTrainingTasks,
  type TrainingTask,
} from './registry.js';
import { batchPartition, trainingSpecHash, validateTrainingSpec, type TrainingSpec } from './spec.js';

const SPEC: TrainingSpec = {
  kind: 'segmenter',
  config: { architecture: 'unet', filters: 64 },
  seed: 1,
  steps: 100,
  batchSize: 8,
  checkpointEvery: 10,
  checkpointDir: '/tmp/run',
  workers: 2,
  taskModules: ['file:///opt/tasks/segmenter.js'],
};

describe('training spec, batch split, progress, registry', () => {
  it('validates specs and lists every problem', () => {
    validateTrainingSpec(SPEC);
    assert.throws(
      () =>
        validateTrainingSpec({
          ...SPEC,
          kind: '',
          steps: 0,
          batchSize: 1,
          checkpointDir: 'rel',
          taskModules: ['x.js'],
        }),
      (error: Error) =>
        [
          'kind must be',
          'steps must be',
          'smaller than workers',
          'absolute path',
          'not an absolute file: URL',
        ].every((part) => error.message.includes(part)),
    );
    assert.throws(() => validateTrainingSpec({ ...SPEC, config: { f: () => 1 } }), /structuredClone/);
  });

  it('hashes what changes the computation, not where it runs', () => {
    const hash = trainingSpecHash(SPEC);
    assert.equal(
      trainingSpecHash({ ...SPEC, checkpointDir: '/elsewhere', backend: 'wasm', taskModules: [] }),
      hash,
    );
    assert.equal(
      trainingSpecHash({ ...SPEC, config: { filters: 64, architecture: 'unet' } }),
      hash,
      'key order',
    );
    for (const change of [
      { seed: 2 },
      { steps: 101 },
      { workers: 1 },
      { batchSize: 4 },
      { config: { filters: 32 } },
    ]) {
      assert.notEqual(trainingSpecHash({ ...SPEC, ...change }), hash, JSON.stringify(change));
    }
    assert.notEqual(trainingSpecHash({ ...SPEC, optimizer: { type: 'sgd', lr: 0.1 } }), hash);
  });

  it('splits the global batch evenly in worker order', () => {
    assert.deepEqual(
      [0, 1, 2].map((w) => batchPartition(8, 3, w)),
      [
        { offset: 0, count: 3, globalSize: 8 },
        { offset: 3, count: 3, globalSize: 8 },
        { offset: 6, count: 2, globalSize: 8 },
      ],
    );
    assert.deepEqual(batchPartition(4, 1, 0), { offset: 0, count: 4, globalSize: 4 });
  });

  it('reports images/s and ETA over a window of recent steps', () => {
    const tracker = new ProgressTracker(10, 0, 1000, 2);
    const first = tracker.update({ step: 1, loss: 1, images: 8, lr: 0.1, stepMs: 90 }, 1100);
    assert.equal(first.imagesPerSecond, 80);
    assert.equal(first.elapsedMs, 1100);
    assert.equal(first.etaMs, 900);
    tracker.update({ step: 2, loss: 1, images: 8, lr: 0.1, stepMs: 90 }, 1200);
    const third = tracker.update({ step: 3, loss: 0.5, images: 8, lr: 0.1, stepMs: 40 }, 1250);
    // Window of the last two steps: 16 images in 150 ms.
    assert.ok(Math.abs(third.imagesPerSecond - 16 / 0.15) < 1e-9);
    assert.equal(third.etaMs, 7 * 75);
    assert.equal(third.loss, 0.5);
  });

  it('registers tasks by kind, once, and names what is registered when a kind is missing', () => {
    const factory = (): TrainingTask => ({
      init: () => {
        throw new Error('not used');
      },
      loadShard: () => undefined,
      computeLossAndGrads: () => {
        throw new Error('not used');
      },
    });
    registerTrainingTask('spec-test-task', factory);
    registerTrainingTask('spec-test-task', factory);
    assert.ok(registeredTrainingTasks().includes('spec-test-task'));
    assert.throws(() => registerTrainingTask('spec-test-task', () => factory()), /already registered/);
    assert.ok(createTrainingTask('spec-test-task'));
    assert.throws(
      () => createTrainingTask('missing', ['file:///a.js']),
      /unknown training task kind 'missing' \(registered: .*spec-test-task.*; task modules imported: file:\/\/\/a.js\)/,
    );
  });
});
