// Worker-thread entry of the release builder: builds one release from the options it is given and posts the
// summary, so the caller's event loop (a coordinator serving sites and researchers) stays free during the build.
import { parentPort, workerData } from 'node:worker_threads';
import { buildRelease, type BuildReleaseOptions } from './release-builder.js';
import type { ReleaseWorkerMessage } from './run-release-worker.js';

const port = parentPort;
if (!port) throw new Error('release-worker.js runs only as a worker thread');
const post = (message: ReleaseWorkerMessage) => port.postMessage(message);
try {
  post({ type: 'result', summary: await buildRelease(workerData as BuildReleaseOptions) });
} catch (error) {
  post({ type: 'error', name: (error as Error).name, message: (error as Error).message ?? String(error) });
}
