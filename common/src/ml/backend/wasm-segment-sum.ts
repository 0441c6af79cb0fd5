// UnsortedSegmentSum for wasm: the gradient of gather (e.g. a Swin relative-position-bias table). ScatterNd
// already adds up updates that land on the same index, so one scatter does it.
import * as tf from '@tensorflow/tfjs';

import { type WasmBackendLike, WasmKernelScope, requiredInput } from './wasm-kernel-scope.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];

export function unsortedSegmentSumKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const x = requiredInput(inputs, 'x');
  const segmentIds = requiredInput(inputs, 'segmentIds');
  const numSegments = (attrs as { numSegments: number }).numSegments;
  if (segmentIds.shape.length !== 1 || segmentIds.shape[0] !== x.shape[0]) {
    throw new Error(
      `unsortedSegmentSum: segmentIds must be 1-D with one id per row of x; got ids ${segmentIds.shape} for x ${x.shape}`,
    );
  }
  const wasm = backend as WasmBackendLike;
  return WasmKernelScope.run(wasm, (ops) => {
    const rows = x.shape[0];
    const rowShape = x.shape.slice(1);
    const ids = wasm.readSync(segmentIds.dataId) as Int32Array;
    const valid = ids.every((id) => id >= 0 && id < numSegments);
    if (valid) {
      return ops.scatterNd(ops.reshape(segmentIds, [rows, 1]), x, [numSegments, ...rowShape]);
    }
    // Ids outside [0, numSegments) are dropped (as in TF and tfjs-cpu). ScatterNd would write out of bounds,
    // so they go to one spare segment that is cut off afterwards.
    const routed = Int32Array.from(ids, (id) => (id >= 0 && id < numSegments ? id : numSegments));
    const withSpare = ops.scatterNd(ops.tensor(routed, [rows, 1]), x, [numSegments + 1, ...rowShape]);
    return ops.slice(withSpare, [0, ...rowShape.map(() => 0)], [numSegments, ...rowShape]);
  });
}
