// A worker thread for the all-reduce spec and benchmark: runs `rounds` reductions of deterministic per-worker
// gradients and posts each result ('values'), or only the mean timings ('timing'); with more barrier parties than
// threads it blocks at the first barrier until the run is aborted.
import { parentPort, workerData } from 'node:worker_threads';

import { GradientExchange, PeerAbortError, SharedBarrier } from '../allreduce.js';

import { testGradient, testImages, type AllReduceTestInit } from './allreduce-test-data.js';

const init = workerData as AllReduceTestInit;
const barrier = new SharedBarrier(new Int32Array(init.control), init.parties, 50);
const exchange = new GradientExchange(init.exchange, init.parameterCount, init.workers, init.worker, barrier);
const timing = { writeMs: 0, reduceMs: 0, waitMs: 0, rounds: 0 };
try {
  const gradients = [0, 1].map((round) => testGradient(init.worker, round, init.parameterCount));
  for (let round = 0; round < init.rounds; round++) {
    const t0 = performance.now();
    exchange.ownSlot.set(
      init.report === 'timing' ? gradients[round % 2] : testGradient(init.worker, round, init.parameterCount),
    );
    timing.writeMs += performance.now() - t0;
    const outcome = exchange.reduce(init.worker * 10 + round, testImages(init.worker, round));
    if (init.report === 'timing') {
      timing.reduceMs += outcome.reduceMs;
      timing.waitMs += outcome.waitMs;
      timing.rounds += 1;
    } else {
      parentPort!.postMessage({
        round,
        loss: outcome.loss,
        images: outcome.images,
        result: exchange.result.slice(),
      });
    }
  }
  if (init.report === 'timing') parentPort!.postMessage(timing);
} catch (error) {
  parentPort!.postMessage({ aborted: error instanceof PeerAbortError, message: (error as Error).message });
}
