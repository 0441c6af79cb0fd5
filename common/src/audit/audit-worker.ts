// Worker-thread entry of the audit: runs runAudit on the options it is given and posts progress and the result,
// so an agent's event loop (heartbeats, transfers) stays free during a long audit.
import { parentPort, workerData } from 'node:worker_threads';
import { runAudit, type AuditRunOptions } from './audit.js';
import type { AuditWorkerMessage } from './run-in-worker.js';

const port = parentPort;
if (!port) throw new Error('audit-worker.js runs only as a worker thread');
const post = (message: AuditWorkerMessage) => port.postMessage(message);
try {
  const result = await runAudit({
    ...(workerData as Omit<AuditRunOptions, 'onProgress' | 'signal'>),
    onProgress: (progress) => post({ type: 'progress', progress }),
  });
  post({ type: 'result', result });
} catch (error) {
  const code = (error as { code?: unknown }).code;
  post({
    type: 'error',
    name: (error as Error).name,
    message: (error as Error).message ?? String(error),
    ...(typeof code === 'string' ? { code } : {}),
  });
}
