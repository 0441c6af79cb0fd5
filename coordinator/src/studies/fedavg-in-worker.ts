// FedAvg of weights blobs in a worker thread (fedavg-worker.js beside this file): the files are read, verified
// (sha256 per tensor) and averaged off the event loop; the average lands in a file the caller stores.
import { Worker } from 'node:worker_threads';

export interface FedAvgWorkerData {
  inputs: Array<{ file: string; sampleCount: number; source: string }>;
  provenance: Record<string, string | number>;
  /** ISO time written into the average's manifest (fixed, so that a re-run writes the same bytes) */
  createdAt: string;
  /** where the averaged blob is written (atomically) */
  out: string;
}

export type FedAvgWorkerMessage =
  | { type: 'done'; size: number; sha256: string }
  | { type: 'error'; stage: 'decode' | 'average' | 'io'; message: string };

/** Why an average could not be made: a blob that does not decode, weights that do not average, or I/O. */
export class FedAvgWorkerError extends Error {
  constructor(
    readonly stage: 'decode' | 'average' | 'io' | 'worker',
    message: string,
  ) {
    super(message);
    this.name = 'FedAvgWorkerError';
  }
}

/** Runs the average in a fresh worker; resolves with the sha256 and size of `data.out` once it is written. */
export function fedAvgInWorker(data: FedAvgWorkerData): Promise<{ sha256: string; size: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./fedavg-worker.js', import.meta.url), {
      workerData: data,
      name: 'fedsynth-fedavg',
    });
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
      void worker.terminate();
    };
    worker.on('message', (message: FedAvgWorkerMessage) => {
      if (message.type === 'done') finish(() => resolve({ sha256: message.sha256, size: message.size }));
      else finish(() => reject(new FedAvgWorkerError(message.stage, message.message)));
    });
    worker.on('error', (error) => finish(() => reject(new FedAvgWorkerError('worker', error.message))));
    worker.on('exit', (code) =>
      finish(() => reject(new FedAvgWorkerError('worker', `the FedAvg worker exited with code ${code}`))),
    );
  });
}
