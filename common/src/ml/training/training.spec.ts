// The training runtime end to end, with real worker threads on the wasm backend and the toy conv task.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { decodeWeights } from '../weights/index.js';

import { decodeOptimizerState } from './optimizers.js';
import type { TrainingProgress } from './progress.js';
import { startTraining, TrainingWorkerError, type TrainingResult } from './run.js';
import { TrainingSpecError } from './spec.js';
import {
  collectingLogger,
  maxAbsDifference,
  RecordingWorkerFactory,
  removeTempDirs,
  tempCheckpointDir,
  tensorsOf,
  toySpec,
} from './testing/training-test-helpers.js';

after(removeTempDirs);

/** Rejects when `promise` takes longer than `ms` (a hung run fails the test instead of hanging it). */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function assertMemoryFlat(result: TrainingResult): void {
  for (const report of result.workers) {
    assert.equal(
      report.tensors.atEnd,
      report.tensors.afterFirstStep,
      `worker ${report.worker} leaked tensors: ${JSON.stringify(report.tensors)}`,
    );
  }
}

describe('training runtime (worker threads, toy conv net)', () => {
  it('trains: the loss falls, progress arrives in order with sane numbers, memory stays flat', async () => {
    const { lines, log } = collectingLogger();
    const events: TrainingProgress[] = [];
    const spec = toySpec({ steps: 40, batchSize: 8 });
    const run = startTraining(spec, { onProgress: (p) => events.push(p), logger: log });
    const result = await within(30_000, run.done);

    assert.equal(result.steps, 40);
    assert.equal(result.cancelled, false);
    assert.equal(result.losses.length, 40);
    const head = result.losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const tail = result.losses.slice(-5).reduce((a, b) => a + b) / 5;
    assert.ok(tail < 0.8 * head, `loss should fall: first steps ${head}, last steps ${tail}`);
    assert.equal(result.finalLoss, result.losses[39]);

    assert.deepEqual(
      events.map((p) => p.step),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    let lastElapsed = 0;
    for (const p of events) {
      assert.equal(p.steps, 40);
      assert.equal(p.images, 8);
      assert.equal(p.loss, result.losses[p.step - 1]);
      assert.ok(Number.isFinite(p.imagesPerSecond) && p.imagesPerSecond > 0, `images/s ${p.imagesPerSecond}`);
      assert.ok(p.elapsedMs >= lastElapsed, 'elapsed grows');
      lastElapsed = p.elapsedMs;
      assert.ok(p.etaMs >= 0 && Number.isFinite(p.etaMs));
      assert.ok(p.stepMs > 0);
    }
    assert.equal(events.at(-1)!.etaMs, 0);
    // The toy's poly schedule: lr0 · (1 − s/S)^0.9 for step index s.
    events.forEach((p) => assert.ok(Math.abs(p.lr - 0.05 * Math.pow(1 - (p.step - 1) / 40, 0.9)) < 1e-12));

    assertMemoryFlat(result);
    assert.equal(result.backend.name, 'wasm');
    assert.equal(
      lines.filter((line) => line.includes('tfjs backend: wasm')).length,
      1,
      'backend logged once',
    );
    assert.equal(decodeWeights(result.weightsBlob).manifest.architecture.name, 'toy-conv');
  });

  it('2 workers keep bit-identical replicas and match 1 worker on the same global batch (even and uneven split)', async () => {
    for (const batchSize of [4, 5]) {
      const config = { hidden: 6 };
      const one = await startTraining(toySpec({ config, steps: 10, batchSize, workers: 1 }), {
        logger: () => {},
      }).done;
      const two = await startTraining(toySpec({ config, steps: 10, batchSize, workers: 2 }), {
        logger: () => {},
      }).done;

      assert.equal(two.workers.length, 2);
      assert.equal(two.workers[0].weightsChecksum, two.workers[1].weightsChecksum, 'replicas differ');
      assertMemoryFlat(one);
      assertMemoryFlat(two);
      // Same examples per step (worker w takes its part of one global batch), gradients averaged weighted by
      // images: only float rounding differs (batch-size dependent sums, the all-reduce's additions).
      one.losses.forEach((loss, step) => {
        assert.ok(
          Math.abs(loss - two.losses[step]) < 1e-5,
          `batch ${batchSize} step ${step}: ${loss} vs ${two.losses[step]}`,
        );
      });
      const difference = maxAbsDifference(tensorsOf(one.weightsBlob), tensorsOf(two.weightsBlob));
      assert.ok(difference < 1e-5, `final weights differ by ${difference}`);
      assert.ok(two.workers[0].timing.reduceMs >= 0 && two.workers[0].timing.waitMs >= 0);
    }
  });

  it('2 workers on disjoint shards stay bit-identical', async () => {
    const result = await startTraining(toySpec({ config: { sampling: 'shard' }, steps: 8, workers: 2 }), {
      logger: () => {},
    }).done;
    assert.equal(result.workers[0].weightsChecksum, result.workers[1].weightsChecksum);
  });

  it('writes checkpoints every N steps atomically, keeps the last 2, and records step, seed, hash and losses', async () => {
    const dir = tempCheckpointDir();
    const written: number[] = [];
    const run = startTraining(toySpec({ steps: 7, checkpointEvery: 2, checkpointDir: dir }), {
      logger: () => {},
    });
    run.on('checkpoint', (c) => written.push(c.step));
    const result = await run.done;

    assert.deepEqual(written, [2, 4, 6, 7]);
    assert.deepEqual(readdirSync(dir).sort(), [
      'ckpt-000000006.json',
      'ckpt-000000006.optimizer',
      'ckpt-000000006.weights',
      'ckpt-000000007.json',
      'ckpt-000000007.optimizer',
      'ckpt-000000007.weights',
    ]);
    assert.equal(result.checkpointPath, path.join(dir, 'ckpt-000000007.json'));
    const meta = JSON.parse(readFileSync(path.join(dir, 'ckpt-000000006.json'), 'utf8'));
    assert.equal(meta.step, 6);
    assert.equal(meta.seed, 7);
    assert.equal(meta.specHash.length, 64);
    assert.deepEqual(meta.losses, result.losses.slice(0, 6));
    const finalWeights = readFileSync(path.join(dir, 'ckpt-000000007.weights'));
    assert.deepEqual(finalWeights, result.weightsBlob);
    assert.equal(decodeOptimizerState(readFileSync(path.join(dir, 'ckpt-000000007.optimizer'))).step, 7);
  });

  it('resumes after a worker crash with results identical to an uninterrupted run', async () => {
    const straight = await startTraining(toySpec({ steps: 6, workers: 2 }), { logger: () => {} }).done;

    const dir = tempCheckpointDir();
    const spec = toySpec({ steps: 6, workers: 2, checkpointEvery: 3, checkpointDir: dir });
    const crashing = new RecordingWorkerFactory({ worker: 1, step: 4, mode: 'throw' });
    await assert.rejects(
      startTraining(spec, { workerFactory: crashing, logger: () => {} }).done,
      /worker 1 failed at step 4/,
    );
    assert.ok(crashing.allExited);

    const resumed = await startTraining(spec, { resume: true, logger: () => {} }).done;
    assert.equal(resumed.resumedFromStep, 3);
    assert.equal(resumed.steps, 6);
    assert.deepEqual(tensorsOf(resumed.weightsBlob), tensorsOf(straight.weightsBlob));
    assert.deepEqual(resumed.losses, straight.losses);
  });

  it('cancel() stops within one step with a checkpoint, and resuming it matches an uninterrupted run', async () => {
    const config = { stepDelayMs: 60 };
    const straight = await startTraining(toySpec({ config, steps: 6 }), { logger: () => {} }).done;

    const spec = toySpec({ config, steps: 6 });
    const factory = new RecordingWorkerFactory();
    const run = startTraining(spec, { workerFactory: factory, logger: () => {} });
    run.on('progress', (p) => {
      if (p.step === 3) run.cancel();
    });
    const cancelled = await within(10_000, run.done);
    assert.equal(cancelled.cancelled, true);
    assert.ok(cancelled.steps >= 3 && cancelled.steps <= 4, `stopped after step ${cancelled.steps}`);
    assert.ok(factory.allExited, 'worker threads still running');
    assert.equal(
      cancelled.checkpointPath,
      path.join(spec.checkpointDir, `ckpt-00000000${cancelled.steps}.json`),
    );

    const resumed = await startTraining(spec, { resume: true, logger: () => {} }).done;
    assert.equal(resumed.resumedFromStep, cancelled.steps);
    assert.deepEqual(tensorsOf(resumed.weightsBlob), tensorsOf(straight.weightsBlob));
    assert.deepEqual(resumed.losses, straight.losses);
  });

  it('an AbortSignal cancels a 2-worker run; both replicas stop at the same step', async () => {
    const controller = new AbortController();
    const factory = new RecordingWorkerFactory();
    const run = startTraining(toySpec({ config: { stepDelayMs: 50 }, steps: 50, workers: 2 }), {
      signal: controller.signal,
      workerFactory: factory,
      checkpointOnCancel: false,
      logger: () => {},
    });
    run.on('progress', (p) => {
      if (p.step === 2) controller.abort();
    });
    const result = await within(10_000, run.done);
    assert.equal(result.cancelled, true);
    assert.ok(result.steps <= 3, `stopped after step ${result.steps}`);
    assert.equal(result.workers[0].weightsChecksum, result.workers[1].weightsChecksum);
    assert.equal(result.checkpointPath, undefined);
    assert.ok(factory.allExited);
  });

  it('reports a worker that throws at step k, naming worker and step, with no thread left running', async () => {
    const factory = new RecordingWorkerFactory({ worker: 1, step: 2, mode: 'throw' });
    const error = await within(
      10_000,
      startTraining(toySpec({ steps: 20, workers: 2 }), {
        workerFactory: factory,
        logger: () => {},
      }).done.then(
        () => assert.fail('should reject'),
        (e: unknown) => e,
      ),
    );
    assert.ok(error instanceof TrainingWorkerError);
    assert.equal(error.worker, 1);
    assert.equal(error.step, 2);
    assert.match(error.message, /training worker 1 failed at step 2: toy fault/);
    assert.ok(factory.allExited, 'a worker thread is still running');
  });

  it('reports a worker that calls process.exit(1), with no thread left running', async () => {
    const factory = new RecordingWorkerFactory({ worker: 1, step: 3, mode: 'exit' });
    const error = await within(
      10_000,
      startTraining(toySpec({ steps: 20, workers: 2 }), {
        workerFactory: factory,
        logger: () => {},
      }).done.then(
        () => assert.fail('should reject'),
        (e: unknown) => e,
      ),
    );
    assert.ok(error instanceof TrainingWorkerError);
    assert.equal(error.worker, 1);
    assert.equal(error.step, 3);
    assert.match(error.message, /training worker 1 exited with code 1 at step 3/);
    assert.ok(factory.allExited);
  });

  it('reports a stalled worker after stallTimeoutMs and terminates every thread', async () => {
    const factory = new RecordingWorkerFactory({ worker: 0, step: 1, mode: 'hang' });
    const started = performance.now();
    await within(
      10_000,
      assert.rejects(
        startTraining(toySpec({ steps: 20, workers: 2 }), {
          workerFactory: factory,
          stallTimeoutMs: 1500,
          shutdownGraceMs: 200,
          logger: () => {},
        }).done,
        (error: unknown) =>
          error instanceof TrainingWorkerError &&
          /for 1500 ms \(worker 0 at step 1, worker 1 at step 1\); stalled/.test(error.message) &&
          error.step === 1,
      ),
    );
    assert.ok(performance.now() - started < 8000);
    assert.ok(factory.allExited);
  });

  it('reports workers that are not ready within startupTimeoutMs', async () => {
    const factory = new RecordingWorkerFactory();
    await assert.rejects(
      startTraining(toySpec({ workers: 2 }), {
        workerFactory: factory,
        startupTimeoutMs: 1,
        logger: () => {},
      }).done,
      (error: unknown) =>
        error instanceof TrainingWorkerError &&
        /not ready after 1 ms \(still initialising: worker 0, 1\)/.test(error.message) &&
        error.step === -1,
    );
    assert.ok(factory.allExited);
  });

  it('reports failures during initialisation: a throwing init, replicas that start different, an unknown kind', async () => {
    const throwing = new RecordingWorkerFactory({ worker: 1, step: 0, mode: 'init-throw' });
    await assert.rejects(
      startTraining(toySpec({ workers: 2 }), { workerFactory: throwing, logger: () => {} }).done,
      /training worker 1 failed during initialisation: toy fault: init of worker 1/,
    );
    assert.ok(throwing.allExited);

    const diverging = new RecordingWorkerFactory({ worker: 1, step: 0, mode: 'init-diverge' });
    await assert.rejects(
      startTraining(toySpec({ workers: 2 }), { workerFactory: diverging, logger: () => {} }).done,
      /replicas differ at start: worker 1's initial weights/,
    );
    assert.ok(diverging.allExited);

    await assert.rejects(
      startTraining(toySpec({ kind: 'no-such-task' }), { logger: () => {} }).done,
      /unknown training task kind 'no-such-task' \(registered: toy-conv;/,
    );
  });

  it('a progress listener that throws fails the run instead of crashing the process', async () => {
    const factory = new RecordingWorkerFactory();
    const run = startTraining(toySpec({ steps: 20, workers: 2 }), {
      workerFactory: factory,
      logger: () => {},
    });
    run.on('progress', (p) => {
      if (p.step === 2) throw new Error('listener bug');
    });
    await assert.rejects(run.done, /a 'progress' listener threw: listener bug/);
    assert.ok(factory.allExited);
  });

  it('the tensor counts it reports do catch a leak', async () => {
    const factory = new RecordingWorkerFactory({ worker: 0, step: 0, mode: 'leak' });
    const result = await startTraining(toySpec({ steps: 5 }), { workerFactory: factory, logger: () => {} })
      .done;
    assert.equal(result.workers[0].tensors.atEnd - result.workers[0].tensors.afterFirstStep, 4);
  });

  it('refuses to start over existing checkpoints, and to resume a different job', async () => {
    const dir = tempCheckpointDir();
    await startTraining(toySpec({ steps: 2, checkpointDir: dir }), { logger: () => {} }).done;
    await assert.rejects(
      startTraining(toySpec({ steps: 2, checkpointDir: dir }), { logger: () => {} }).done,
      /already holds checkpoints \(up to step 2\)/,
    );
    await assert.rejects(
      startTraining(toySpec({ steps: 2, seed: 8, checkpointDir: dir }), { resume: true, logger: () => {} })
        .done,
      /belongs to a different job/,
    );
    const again = await startTraining(toySpec({ steps: 2, checkpointDir: dir }), {
      resume: true,
      logger: () => {},
    }).done;
    assert.equal(again.steps, 2);
    assert.equal(again.resumedFromStep, 2);
  });

  it('rejects an invalid spec synchronously', () => {
    assert.throws(() => startTraining(toySpec({ batchSize: 1, workers: 2 })), TrainingSpecError);
    assert.throws(
      () => startTraining(toySpec({ checkpointDir: 'relative' })),
      /checkpointDir must be an absolute path/,
    );
  });
});
