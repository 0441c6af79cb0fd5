// Slice, SplitV and Concat for wasm. The stock kernels are JavaScript too, but Slice first copies the whole
// input off the heap (readSync) and both copy each innermost row with subarray().set(), which for channel
// slices of 16-32 floats costs more than the copy itself. A U-Net concatenates skips along channels and its
// backward pass splits them again; these run 3-8x faster with plain loops for short rows.
import * as tf from '@tensorflow/tfjs';

import type { KernelFactory } from './wasm-fast-paths.js';
import { type WasmBackendLike, requiredInput } from './wasm-kernel-scope.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];
type Values = tf.TypedArray;

/** Rows at least this long are copied with subarray().set(); shorter ones element by element. */
const BULK_COPY_MIN = 32;

function copyRun(src: Values, from: number, dst: Values, to: number, length: number): void {
  if (length >= BULK_COPY_MIN) {
    dst.set(src.subarray(from, from + length), to);
    return;
  }
  for (let i = 0; i < length; i++) dst[to + i] = src[from + i] as number;
}

/** Copies the box [begin, begin + size) of a row-major tensor into `dst`, densely. */
export function copyBox(
  src: Values,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  dst: Values,
): void {
  const rank = shape.length;
  if (rank === 0) {
    dst[0] = src[0] as number;
    return;
  }
  const strides = tf.util.computeStrides([...shape]);
  strides.push(1);
  // Axes after `inner` are copied whole, so axis `inner` and everything after it is one contiguous run.
  let inner = rank - 1;
  while (inner > 0 && size[inner] === shape[inner]) inner--;
  const run = (size[inner] ?? 1) * (strides[inner] ?? 1);
  const index = new Array<number>(inner).fill(0);
  let from = begin.reduce((acc, b, axis) => acc + b * (strides[axis] ?? 0), 0);
  const runs = size.slice(0, inner).reduce((acc, s) => acc * s, 1);
  for (let r = 0, to = 0; r < runs; r++, to += run) {
    copyRun(src, from, dst, to, run);
    // Odometer over the outer axes, moving the source offset along.
    for (let axis = inner - 1; axis >= 0; axis--) {
      const stride = strides[axis] ?? 0;
      index[axis] = (index[axis] ?? 0) + 1;
      from += stride;
      if ((index[axis] ?? 0) < (size[axis] ?? 0)) break;
      from -= (index[axis] ?? 0) * stride;
      index[axis] = 0;
    }
  }
}

export const fastSliceFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const x = requiredInput(args.inputs, 'x');
  if (x.dtype === 'string' || !stock) return stockOrThrow(stock, 'Slice')(args);
  const { begin, size } = args.attrs as { begin: number | number[]; size?: number | number[] };
  const [start, extent] = tf.slice_util.parseSliceParams(x, begin, size);
  const backend = args.backend as WasmBackendLike;
  const out = backend.makeOutput(extent, x.dtype);
  // Views only after the allocation: growing the wasm memory detaches older views.
  copyBox(backend.typedArrayFromHeap(x), x.shape, start, extent, backend.typedArrayFromHeap(out));
  return out;
};

export const fastSplitVFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const x = requiredInput(args.inputs, 'x');
  if (x.dtype === 'string' || !stock) return stockOrThrow(stock, 'SplitV')(args);
  const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
  const splitAxis = tf.util.parseAxisParam(axis, x.shape)[0] ?? 0;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, splitAxis);
  const backend = args.backend as WasmBackendLike;
  const outputs = sizes.map((s) =>
    backend.makeOutput(
      x.shape.map((d, i) => (i === splitAxis ? s : d)),
      x.dtype,
    ),
  );
  const src = backend.typedArrayFromHeap(x);
  const begin = x.shape.map(() => 0);
  outputs.forEach((out) => {
    copyBox(src, x.shape, begin, out.shape, backend.typedArrayFromHeap(out));
    begin[splitAxis] = (begin[splitAxis] ?? 0) + (out.shape[splitAxis] ?? 0);
  });
  return outputs;
};

export const fastConcatFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const inputs = Object.values(args.inputs).filter((t): t is tf.TensorInfo => t != null);
  const first = inputs[0];
  const nonEmpty = inputs.filter((t) => tf.util.sizeFromShape(t.shape) > 0);
  if (
    !stock ||
    !first ||
    first.dtype === 'string' ||
    nonEmpty.length < 2 ||
    nonEmpty.some((t) => t.dtype !== first.dtype)
  ) {
    return stockOrThrow(stock, 'Concat')(args);
  }
  const { axis } = args.attrs as { axis: number | number[] };
  const concatAxis = tf.util.parseAxisParam(axis, first.shape)[0] ?? 0;
  const outShape = tf.backend_util.computeOutShape(
    inputs.map((t) => t.shape),
    concatAxis,
  );
  const backend = args.backend as WasmBackendLike;
  const out = backend.makeOutput(outShape, first.dtype);
  const dst = backend.typedArrayFromHeap(out);
  const outer = tf.util.sizeFromShape(outShape.slice(0, concatAxis));
  const blocks = nonEmpty.map((t) => tf.util.sizeFromShape(t.shape.slice(concatAxis)));
  const rowLength = blocks.reduce((a, b) => a + b, 0);
  nonEmpty.forEach((input, i) => {
    const src = backend.typedArrayFromHeap(input);
    const block = blocks[i] ?? 0;
    const column = blocks.slice(0, i).reduce((a, b) => a + b, 0);
    for (let o = 0; o < outer; o++) copyRun(src, o * block, dst, o * rowLength + column, block);
  });
  return out;
};

function stockOrThrow(stock: tf.KernelConfig | undefined, name: string): tf.KernelFunc {
  if (!stock) throw new Error(`the stock wasm '${name}' kernel is missing; cannot fall back to it`);
  return stock.kernelFunc;
}
