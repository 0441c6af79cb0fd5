// MaxPoolGrad for wasm as one pass over the windows on the heap. Stock wasm takes ~20x longer than the max pool
// itself (13 ms for a 8x64x64x16 input here). Each window's gradient goes to its first maximum in row-major
// order (strict >), the rule tfjs-cpu and TF use, so ties (common after ReLU) match exactly.
import * as tf from '@tensorflow/tfjs';

import type { KernelFactory } from './wasm-fast-paths.js';
import { type WasmBackendLike, requiredInput } from './wasm-kernel-scope.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];

export const fastMaxPoolGradFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const dy = requiredInput(args.inputs, 'dy');
  const input = requiredInput(args.inputs, 'input');
  if (input.dtype !== 'float32' || dy.dtype !== 'float32' || input.shape.length !== 4) {
    if (!stock) throw new Error("the stock wasm 'MaxPoolGrad' kernel is missing; cannot fall back to it");
    return stock.kernelFunc(args);
  }
  const attrs = args.attrs as {
    filterSize: number | [number, number];
    strides: number | [number, number];
    pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const backend = args.backend as WasmBackendLike;
  const out = backend.makeOutput(input.shape, 'float32');
  // Views only after the allocation: growing the wasm memory detaches older views.
  const dx = backend.typedArrayFromHeap(out);
  dx.fill(0);
  scatterToWindowMaxima(backend.typedArrayFromHeap(input), backend.typedArrayFromHeap(dy), dx, info);
  return out;
};

function scatterToWindowMaxima(
  x: tf.TypedArray,
  dy: tf.TypedArray,
  dx: tf.TypedArray,
  info: tf.backend_util.Conv2DInfo,
): void {
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const { top, left } = info.padInfo;
  // Per-channel running maximum and its flat input index, for the window being scanned.
  const best = new Float64Array(channels);
  const bestAt = new Int32Array(channels);
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      const rowStart = oh * strideHeight - top;
      const rowFrom = Math.max(rowStart, 0);
      const rowTo = Math.min(rowStart + filterHeight, inHeight);
      for (let ow = 0; ow < outWidth; ow++) {
        const colStart = ow * strideWidth - left;
        const colFrom = Math.max(colStart, 0);
        const colTo = Math.min(colStart + filterWidth, inWidth);
        best.fill(Number.NEGATIVE_INFINITY);
        bestAt.fill(-1);
        for (let ih = rowFrom; ih < rowTo; ih++) {
          for (let iw = colFrom; iw < colTo; iw++) {
            const base = ((b * inHeight + ih) * inWidth + iw) * channels;
            for (let c = 0; c < channels; c++) {
              const value = x[base + c] as number;
              if (value > (best[c] as number)) {
                best[c] = value;
                bestAt[c] = base + c;
              }
            }
          }
        }
        const dyBase = ((b * outHeight + oh) * outWidth + ow) * channels;
        for (let c = 0; c < channels; c++) {
          const at = bestAt[c] as number;
          if (at >= 0) dx[at] = (dx[at] as number) + (dy[dyBase + c] as number);
        }
      }
    }
  }
}
