// Worker-thread entry of the training runtime (loaded by TrainingRun as compiled JS). workerData: WorkerInit.
import { parentPort, workerData } from 'node:worker_threads';

import { selectBackend } from '../backend/index.js';

import type { MainToWorker, WorkerInit } from './protocol.js';
import { runTrainingWorker, type WorkerPort } from './worker-loop.js';

if (!parentPort) throw new Error('training-worker.js must run in a worker thread');
const parent = parentPort;

const port: WorkerPort = {
  post: (message, transfer) => parent.postMessage(message, transfer),
  nextMessage: () => new Promise<MainToWorker>((resolve) => parent.once('message', resolve)),
};

await runTrainingWorker(workerData as WorkerInit, port, {
  selectBackend,
  importModule: (url) => import(url),
  now: () => performance.now(),
});
