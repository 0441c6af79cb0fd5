// Worker thread of the round average (fedavg-in-worker.ts): decodes the sites' weights blobs, averages them and
// writes the result to a file, so that hashing and averaging hundreds of MB never block the coordinator's loop.
// Imports format/fedavg directly (not weights/index, which pulls TensorFlow.js into the worker).
import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { fedAvg, type FedAvgInput } from '@fedsynth/common/ml/weights/fedavg';
import { decodeWeights } from '@fedsynth/common/ml/weights/format';
import type { FedAvgWorkerData, FedAvgWorkerMessage } from './fedavg-in-worker.js';

async function run(data: FedAvgWorkerData): Promise<FedAvgWorkerMessage> {
  const inputs: FedAvgInput[] = [];
  for (const input of data.inputs) {
    try {
      const decoded = decodeWeights(await readFile(input.file), input.source);
      inputs.push({
        // the site's training slice count is the FedAvg weight, whatever its manifest says
        manifest: { ...decoded.manifest, sampleCount: input.sampleCount },
        tensors: decoded.tensors,
        blobSha256: decoded.blobSha256,
        source: input.source,
      });
    } catch (error) {
      return { type: 'error', stage: 'decode', message: (error as Error).message };
    }
  }
  let averaged: Buffer;
  try {
    averaged = fedAvg(inputs, { provenance: data.provenance, createdAt: new Date(data.createdAt) });
  } catch (error) {
    return { type: 'error', stage: 'average', message: (error as Error).message };
  }
  await writeFile(`${data.out}.partial`, averaged);
  await rename(`${data.out}.partial`, data.out);
  return {
    type: 'done',
    size: averaged.byteLength,
    sha256: createHash('sha256').update(averaged).digest('hex'),
  };
}

run(workerData as FedAvgWorkerData).then(
  (message) => parentPort!.postMessage(message),
  (error: unknown) =>
    parentPort!.postMessage({ type: 'error', stage: 'io', message: (error as Error).message }),
);
