// Runs the release builder in a worker thread (release-worker.js beside this file). The build is CPU work (gzip of
// every NIfTI, PNG deflate of every preview sheet) that would otherwise block the caller's event loop for seconds.
import { Worker } from 'node:worker_threads';
import type { BuildReleaseOptions, ReleaseSummary } from './release-builder.js';

export type ReleaseWorkerMessage =
  { type: 'result'; summary: ReleaseSummary } | { type: 'error'; name: string; message: string };

/** Like buildRelease, in a worker thread; rejects with the builder's error message (and name). */
export function buildReleaseInWorker(options: BuildReleaseOptions): Promise<ReleaseSummary> {
  return new Promise<ReleaseSummary>((resolve, reject) => {
    const worker = new Worker(new URL('./release-worker.js', import.meta.url), {
      workerData: options,
      name: 'fedsynth-release',
    });
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
      void worker.terminate();
    };
    worker.on('message', (message: ReleaseWorkerMessage) => {
      if (message.type === 'result') finish(() => resolve(message.summary));
      else finish(() => reject(Object.assign(new Error(message.message), { name: message.name })));
    });
    worker.on('error', (error) => finish(() => reject(error)));
    worker.on('exit', (code) => finish(() => reject(new Error(`release worker exited with code ${code}`))));
  });
}
