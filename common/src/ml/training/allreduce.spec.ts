// The shared-memory all-reduce with real threads: weighted averages, identical results in every worker across
// rounds, and waiters woken by an abort.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';

import { chunkOf, createControlBuffer, exchangeBufferBytes, requestAbort } from './allreduce.js';
import { testGradient, testImages, type AllReduceTestInit } from './testing/allreduce-test-data.js';

const WORKER_URL = new URL('./testing/allreduce-test-worker.js', import.meta.url);

interface RoundMessage {
  round: number;
  loss: number;
  images: number;
  result: Float32Array;
}

function spawn(init: AllReduceTestInit): { messages: Promise<unknown[]>; worker: Worker } {
  const worker = new Worker(WORKER_URL, { workerData: init });
  const received: unknown[] = [];
  worker.on('message', (message) => received.push(message));
  const messages = new Promise<unknown[]>((resolve, reject) => {
    worker.on('error', reject);
    worker.on('exit', () => resolve(received));
  });
  return { messages, worker };
}

describe('shared-memory gradient all-reduce', () => {
  it('splits the parameter vector into contiguous chunks covering it exactly', () => {
    for (const [length, workers] of [
      [10, 3],
      [2, 4],
      [1_000_003, 2],
    ]) {
      let next = 0;
      for (let worker = 0; worker < workers; worker++) {
        const [start, end] = chunkOf(length, workers, worker);
        assert.equal(start, next);
        assert.ok(end >= start);
        next = end;
      }
      assert.equal(next, length);
    }
  });

  it('averages 3 workers weighted by images, identically in every worker, over several rounds', async () => {
    const workers = 3;
    const parameterCount = 1001;
    const rounds = 4;
    const control = createControlBuffer(workers);
    const exchange = new SharedArrayBuffer(exchangeBufferBytes(parameterCount, workers));
    const spawned = Array.from({ length: workers }, (_, worker) =>
      spawn({ control, exchange, parameterCount, workers, worker, rounds, parties: workers }),
    );
    const outputs = (await Promise.all(spawned.map((s) => s.messages))) as RoundMessage[][];

    for (let round = 0; round < rounds; round++) {
      const images = Array.from({ length: workers }, (_, worker) => testImages(worker, round));
      const total = images.reduce((a, b) => a + b);
      const gradients = Array.from({ length: workers }, (_, worker) =>
        testGradient(worker, round, parameterCount),
      );
      const expectedLoss = images.reduce((sum, n, worker) => sum + (n / total) * (worker * 10 + round), 0);
      for (let worker = 0; worker < workers; worker++) {
        const message = outputs[worker][round];
        assert.equal(message.round, round);
        assert.equal(message.images, total);
        assert.ok(Math.abs(message.loss - expectedLoss) < 1e-12);
        assert.deepEqual(message.result, outputs[0][round].result, 'every worker reads the same average');
      }
      const result = outputs[0][round].result;
      for (let i = 0; i < parameterCount; i++) {
        const expected = gradients.reduce((sum, g, worker) => sum + (images[worker] / total) * g[i], 0);
        assert.ok(
          Math.abs(result[i] - expected) < 1e-5,
          `round ${round} element ${i}: ${result[i]} vs ${expected}`,
        );
      }
    }
  });

  it('wakes workers waiting at a barrier when the run is aborted', async () => {
    const control = createControlBuffer(2);
    const exchange = new SharedArrayBuffer(exchangeBufferBytes(16, 2));
    // Three parties, two threads: the barrier can never complete on its own.
    const spawned = Array.from({ length: 2 }, (_, worker) =>
      spawn({ control, exchange, parameterCount: 16, workers: 2, worker, rounds: 1, parties: 3 }),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const aborted = performance.now();
    requestAbort(new Int32Array(control));
    const outputs = await Promise.all(spawned.map((s) => s.messages));
    assert.ok(performance.now() - aborted < 2000);
    for (const output of outputs)
      assert.deepEqual(output, [
        { aborted: true, message: 'training aborted by another worker or the main thread' },
      ]);
  });
});
