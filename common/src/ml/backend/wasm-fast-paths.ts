// Faster wasm versions of kernels that stock tfjs-wasm has but runs far below what its XNNPACK kernels allow
// (found by profiling U-Net and Swin training steps). Each takes the common case onto fast kernels and hands
// anything else to the stock kernel it replaced, so behaviour never narrows.
import * as tf from '@tensorflow/tfjs';

import { type WasmBackendLike, WasmKernelScope, requiredInput } from './wasm-kernel-scope.js';

type KernelArgs = Parameters<tf.KernelFunc>[0];
/** Builds an override from the stock kernel it replaces (the fallback). */
export type KernelFactory = (stock: tf.KernelConfig | undefined) => tf.KernelFunc;

function requireStock(stock: tf.KernelConfig | undefined, name: string): tf.KernelConfig {
  if (!stock) throw new Error(`the stock wasm '${name}' kernel is missing; cannot fall back to it`);
  return stock;
}

const product = (dims: readonly number[]): number => dims.reduce((acc, d) => acc * d, 1);
const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;

/**
 * BatchMatMul / _FusedMatMul. Stock wasm uses XNNPACK only for an untransposed, batch-1 product and otherwise
 * a scalar loop, so every matMul gradient (dy·Bᵀ, Aᵀ·dy) and every batched-activations-times-weights product
 * ran ~10x slow. When B is shared across the batch we transpose explicitly (one memory pass), fold
 * A's batch into rows and take the fast path. Products with a batch on B (attention scores) stay stock.
 */
export const fastMatMulFactory =
  (kernelName: 'BatchMatMul' | '_FusedMatMul'): KernelFactory =>
  (stock) =>
  (args: KernelArgs) => {
    const base = requireStock(stock, kernelName);
    const a = requiredInput(args.inputs, 'a');
    const b = requiredInput(args.inputs, 'b');
    const attrs = args.attrs as { transposeA: boolean; transposeB: boolean };
    const batchA = product(a.shape.slice(0, -2));
    const batchB = product(b.shape.slice(0, -2));
    const alreadyFast = !attrs.transposeA && !attrs.transposeB && batchA === 1;
    const bias = args.inputs['bias'];
    const preluWeights = args.inputs['preluActivationWeights'];
    const perColumnExtras =
      (bias == null || bias.shape.length === 1) && (preluWeights == null || preluWeights.shape.length <= 1);
    if (
      alreadyFast ||
      batchB !== 1 ||
      a.dtype !== 'float32' ||
      b.dtype !== 'float32' ||
      a.shape.length < 2 ||
      b.shape.length < 2 ||
      !perColumnExtras
    ) {
      return base.kernelFunc(args);
    }
    return WasmKernelScope.run(args.backend as WasmBackendLike, (ops) => {
      const [aOuter, aInner] = a.shape.slice(-2);
      const [bOuter, bInner] = b.shape.slice(-2);
      let a3 = ops.reshape(a, [batchA, aOuter, aInner]);
      if (attrs.transposeA) a3 = ops.transpose(a3, [0, 2, 1]);
      const [, rows, shared] = a3.shape;
      let b2 = ops.reshape(b, [bOuter, bInner]);
      if (attrs.transposeB) b2 = ops.transpose(b2, [1, 0]);
      const cols = b2.shape[1];
      const inputs: tf.NamedTensorInfoMap = {
        ...args.inputs,
        a: ops.reshape(a3, [1, batchA * rows, shared]),
        b: ops.reshape(b2, [1, shared, cols]),
      };
      const out = ops.callKernel(base, inputs, { ...args.attrs, transposeA: false, transposeB: false });
      const outerShape = tf.broadcast_util.assertAndGetBroadcastShape(
        a.shape.slice(0, -2),
        b.shape.slice(0, -2),
      );
      return ops.reshape(out, [...outerShape, rows, cols]);
    });
  };

/**
 * LeakyRelu: stock wasm runs a scalar loop (~15x slower than XNNPACK's PReLU). LeakyRelu is PReLU with one
 * slope for every channel, which is exact.
 */
export const fastLeakyReluFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const base = requireStock(stock, 'LeakyRelu');
  const x = requiredInput(args.inputs, 'x');
  const { alpha } = args.attrs as { alpha: number };
  const channels = x.shape[x.shape.length - 1] ?? 0;
  if (x.dtype !== 'float32' || x.shape.length === 0 || channels === 0) return base.kernelFunc(args);
  return WasmKernelScope.run(args.backend as WasmBackendLike, (ops) =>
    ops.kernel('Prelu', { x, alpha: ops.constant([channels], alpha) }),
  );
};

/**
 * Tile: stock wasm computes an index per element (~40x slower than a broadcast add); BatchNorm's backward pass
 * and broadcastTo lean on it. Tiling is a broadcast of x (with a unit axis before every tiled axis) against
 * zeros; runs of axes of the same kind are merged to keep the broadcast low-rank.
 */
export const fastTileFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const base = requireStock(stock, 'Tile');
  const x = requiredInput(args.inputs, 'x');
  const { reps } = args.attrs as { reps: number[] };
  if (x.dtype !== 'float32' || reps.length !== x.shape.length || reps.some((r) => r < 1)) {
    return base.kernelFunc(args);
  }
  // Each axis i becomes (reps[i] copies) x (shape[i] values); "repeat" axes broadcast x, "value" axes carry it.
  const xDims: number[] = [];
  const zeroDims: number[] = [];
  let lastKind: 'repeat' | 'value' | undefined;
  const push = (kind: 'repeat' | 'value', size: number): void => {
    if (size === 1) return;
    const last = xDims.length - 1;
    if (kind === lastKind) {
      xDims[last] = (xDims[last] ?? 1) * (kind === 'value' ? size : 1);
      zeroDims[last] = (zeroDims[last] ?? 1) * (kind === 'repeat' ? size : 1);
      return;
    }
    xDims.push(kind === 'value' ? size : 1);
    zeroDims.push(kind === 'repeat' ? size : 1);
    lastKind = kind;
  };
  x.shape.forEach((size, i) => {
    push('repeat', reps[i] ?? 1);
    push('value', size);
  });
  if (!zeroDims.some((d) => d > 1) || xDims.length > 4) return base.kernelFunc(args);
  const outShape = x.shape.map((size, i) => size * (reps[i] ?? 1));
  return WasmKernelScope.run(args.backend as WasmBackendLike, (ops) => {
    const spread = ops.kernel('Add', { a: ops.reshape(x, xDims), b: ops.constant(zeroDims, 0) });
    return ops.reshape(spread, outShape);
  });
};

/**
 * AvgPoolGrad for non-overlapping, unpadded windows (filter == stride, the usual 2x2/2): every input pixel of
 * a window gets dy / windowSize, which is one broadcast multiply (stock: ~10x slower loop).
 */
export const fastAvgPoolGradFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const base = requireStock(stock, 'AvgPoolGrad');
  const dy = requiredInput(args.inputs, 'dy');
  const input = requiredInput(args.inputs, 'input');
  const attrs = args.attrs as {
    filterSize: number | [number, number];
    strides: number | [number, number];
    pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  };
  if (dy.dtype !== 'float32' || input.shape.length !== 4) return base.kernelFunc(args);
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
  );
  const { top, bottom, left, right } = info.padInfo;
  const tiles =
    info.filterHeight === info.strideHeight &&
    info.filterWidth === info.strideWidth &&
    top + bottom + left + right === 0 &&
    info.dataFormat === 'channelsLast';
  if (!tiles) return base.kernelFunc(args);
  const [b, h, w, c] = input.shape as [number, number, number, number];
  const kh = info.filterHeight;
  const kw = info.filterWidth;
  const oh = info.outHeight;
  const ow = info.outWidth;
  return WasmKernelScope.run(args.backend as WasmBackendLike, (ops) => {
    const windows = ops.kernel('Multiply', {
      a: ops.reshape(dy, [b * oh, 1, ow, 1, c]),
      b: ops.constant([1, kh, 1, kw, 1], 1 / (kh * kw)),
    });
    const covered = ops.reshape(windows, [b, oh * kh, ow * kw, c]);
    // Rows/columns past the last whole window (valid padding) get no gradient.
    if (oh * kh === h && ow * kw === w) return covered;
    return ops.pad(covered, [
      [0, 0],
      [0, h - oh * kh],
      [0, w - ow * kw],
      [0, 0],
    ]);
  });
};

/**
 * ResizeNearestNeighborGrad for upsampling by a power-of-two factor without alignCorners (UpSampling2D): each
 * input pixel receives the sum of its k x l block of dy, i.e. average pooling times k*l (stock: ~20x slower).
 * Powers of two keep the scale exact, so the block mapping matches the forward kernel bit for bit.
 */
export const fastResizeNearestGradFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const base = requireStock(stock, 'ResizeNearestNeighborGrad');
  const images = requiredInput(args.inputs, 'images');
  const dy = requiredInput(args.inputs, 'dy');
  const { alignCorners } = args.attrs as { alignCorners: boolean };
  if (alignCorners || dy.dtype !== 'float32' || images.shape.length !== 4 || dy.shape.length !== 4) {
    return base.kernelFunc(args);
  }
  const [, h, w] = images.shape as [number, number, number, number];
  const [, dyH, dyW] = dy.shape as [number, number, number, number];
  const kh = dyH / h;
  const kw = dyW / w;
  if (!isPowerOfTwo(kh) || !isPowerOfTwo(kw) || kh * kw === 1) return base.kernelFunc(args);
  return WasmKernelScope.run(args.backend as WasmBackendLike, (ops) => {
    const mean = ops.kernel('AvgPool', { x: dy }, { filterSize: [kh, kw], strides: [kh, kw], pad: 'valid' });
    return ops.kernel('Multiply', { a: mean, b: ops.constant([], kh * kw) });
  });
};

/**
 * Transpose: stock wasm has loops for rank <= 4 but a per-element generic path above that (~100x slower), which
 * Swin's window partition and qkv permutes hit. We drop unit axes, merge axes that stay adjacent, and if rank 5+
 * remains, do the permutation as a few single-axis moves, each a transpose of rank <= 4.
 */
export const fastTransposeFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const base = requireStock(stock, 'Transpose');
  const x = requiredInput(args.inputs, 'x');
  const { perm } = args.attrs as { perm: number[] };
  const plan = canonicalTranspose(x.shape, perm);
  const alreadyCanonical = plan.shape.length === x.shape.length;
  if (plan.shape.length <= 1 || (alreadyCanonical && plan.shape.length <= 4)) return base.kernelFunc(args);
  const outShape = perm.map((axis) => x.shape[axis] ?? 1);
  return WasmKernelScope.run(args.backend as WasmBackendLike, (ops) => {
    if (plan.shape.length <= 4) {
      const moved = ops.callKernel(base, { x: ops.reshape(x, plan.shape) }, { perm: plan.perm });
      return ops.reshape(moved, outShape);
    }
    let current = ops.reshape(x, plan.shape);
    for (const [from, to] of singleAxisMoves(plan.perm)) {
      const movePerm = current.shape.map((_, i) => i);
      movePerm.splice(to, 0, ...movePerm.splice(from, 1));
      const merged = canonicalTranspose(current.shape, movePerm);
      const moved = ops.callKernel(base, { x: ops.reshape(current, merged.shape) }, { perm: merged.perm });
      current = ops.reshape(
        moved,
        movePerm.map((axis) => current.shape[axis] ?? 1),
      );
    }
    return ops.reshape(current, outShape);
  });
};

/** Shape and perm with unit axes dropped and axes that stay neighbours merged. */
export function canonicalTranspose(
  shape: readonly number[],
  perm: readonly number[],
): { shape: number[]; perm: number[] } {
  const kept = perm.filter((axis) => (shape[axis] ?? 1) !== 1);
  // Group runs in output order whose input axes are consecutive (ignoring dropped unit axes).
  const keptInputOrder = [...kept].sort((p, q) => p - q);
  const rankInInput = new Map(keptInputOrder.map((axis, i) => [axis, i]));
  const groups: number[][] = [];
  for (const axis of kept) {
    const last = groups[groups.length - 1];
    const prev = last?.[last.length - 1];
    if (last && prev !== undefined && rankInInput.get(axis) === (rankInInput.get(prev) ?? -2) + 1)
      last.push(axis);
    else groups.push([axis]);
  }
  const groupsByInput = [...groups].sort((g, h) => (g[0] ?? 0) - (h[0] ?? 0));
  return {
    shape: groupsByInput.map((g) => product(g.map((axis) => shape[axis] ?? 1))),
    perm: groups.map((g) => groupsByInput.indexOf(g)),
  };
}

/** Moves (from index, to index) that turn the identity order into `perm`, one axis at a time. */
function singleAxisMoves(perm: readonly number[]): Array<[number, number]> {
  const order = perm.map((_, i) => i);
  const moves: Array<[number, number]> = [];
  perm.forEach((axis, target) => {
    const from = order.indexOf(axis);
    if (from === target) return;
    order.splice(target, 0, ...order.splice(from, 1));
    moves.push([from, target]);
  });
  return moves;
}

/**
 * Identity: stock wasm copies the data, and the engine clones every tensor it saves for the backward pass,
 * so a U-Net step copied ~150 MB for nothing. Tensors are immutable, so sharing the buffer with one more
 * reference (what the cpu backend and wasm's own Reshape do) is exact.
 */
export const sharedIdentityFactory: KernelFactory = (stock) => (args: KernelArgs) => {
  const x = requiredInput(args.inputs, 'x');
  if (x.dtype === 'string') return requireStock(stock, 'Identity').kernelFunc(args);
  (args.backend as WasmBackendLike).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
};
