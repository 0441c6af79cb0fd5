// Runs the audit in a worker thread (audit-worker.js beside this file): the caller's event loop stays free.
import { Worker } from 'node:worker_threads';
import {
  AuditInputError,
  AuditReferenceError,
  type AuditProgress,
  type AuditResult,
  type AuditRunOptions,
} from './audit.js';

export type AuditWorkerMessage =
  | { type: 'progress'; progress: AuditProgress }
  | { type: 'result'; result: AuditResult }
  | { type: 'error'; name: string; message: string; code?: string };

/** Like runAudit, in a worker; aborting `signal` terminates the worker and rejects with the signal's reason. */
export function runAuditInWorker(options: AuditRunOptions): Promise<AuditResult> {
  const { onProgress, signal, ...data } = options;
  signal?.throwIfAborted();
  return new Promise<AuditResult>((resolve, reject) => {
    const worker = new Worker(new URL('./audit-worker.js', import.meta.url), {
      workerData: data,
      name: 'fedsynth-audit',
    });
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      fn();
      void worker.terminate();
    };
    const onAbort = () => finish(() => reject(signal!.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (message: AuditWorkerMessage) => {
      if (message.type === 'progress') onProgress?.(message.progress);
      else if (message.type === 'result') finish(() => resolve(message.result));
      else {
        // AuditInputError carries "file: reason" in its message already; AuditReferenceError keeps its code.
        const error =
          message.name === 'AuditInputError' || message.name === 'AuditReferenceError'
            ? Object.assign(new Error(message.message), {
                name: message.name,
                ...(message.code !== undefined ? { code: message.code } : {}),
              })
            : new Error(message.message);
        finish(() => reject(error));
      }
    });
    worker.on('error', (error) => finish(() => reject(error)));
    worker.on('exit', (code) => finish(() => reject(new Error(`audit worker exited with code ${code}`))));
  });
}

export { AuditInputError, AuditReferenceError };
