// Convolution gradients for the wasm backend, built from wasm's fast (XNNPACK) forward convolutions.
//
// Filter gradient: dW[kh, kw, ci, co] = sum over (b, oh, ow) of x[b, oh*s + kh*d - top, ...ci] * dy[b, oh, ow, co].
// Swapping roles (input channels become the batch, the batch becomes the channel axis, dy becomes the filter)
// turns that into one forward convolution with stride d and dilation s.
// Input gradient: the transposed convolution, a stride-1 convolution of padded dy with the spatially flipped
// filter whose in/out channel axes are swapped. For stride s > 1 the regular convolution splits it into s*s
// phases computed by one convolution (no zero insertion, so no s*s wasted multiply-adds); depthwise still
// inserts s-1 zeros between dy's pixels (rare in our models).
import * as tf from '@tensorflow/tfjs';

import { type Pair, type WasmBackendLike, WasmKernelScope, requiredInput } from './wasm-kernel-scope.js';

type TensorInfo = tf.TensorInfo;
type Conv2DInfo = tf.backend_util.Conv2DInfo;
type ConvPad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
type RoundingMode = 'floor' | 'round' | 'ceil' | undefined;
type Shape4D = [number, number, number, number];

const NCHW_TO_NHWC = [0, 2, 3, 1];
const NHWC_TO_NCHW = [0, 3, 1, 2];

/** One spatial axis of a convolution, as the gradient maths needs it. */
interface AxisGeometry {
  inSize: number;
  outSize: number;
  filterSize: number;
  stride: number;
  dilation: number;
  padBefore: number;
}

function axes(info: Conv2DInfo): [AxisGeometry, AxisGeometry] {
  return [
    {
      inSize: info.inHeight,
      outSize: info.outHeight,
      filterSize: info.filterHeight,
      stride: info.strideHeight,
      dilation: info.dilationHeight,
      padBefore: info.padInfo.top,
    },
    {
      inSize: info.inWidth,
      outSize: info.outWidth,
      filterSize: info.filterWidth,
      stride: info.strideWidth,
      dilation: info.dilationWidth,
      padBefore: info.padInfo.left,
    },
  ];
}

/**
 * Padding of x for the filter-gradient convolution: exactly the input rows the forward pass read. Rows past the
 * last window (valid padding, strides that do not divide evenly) are cropped instead of padded.
 */
function filterGradientPadding(axis: AxisGeometry): { before: number; after: number; crop: number } {
  const extent = (axis.outSize - 1) * axis.stride + (axis.filterSize - 1) * axis.dilation + 1;
  const after = extent - axis.padBefore - axis.inSize;
  return { before: axis.padBefore, after: Math.max(after, 0), crop: Math.max(-after, 0) };
}

/**
 * Padding of the zero-inserted dy (outSize * stride long, trailing zeros included) so that a stride-1
 * convolution with the flipped filter yields inSize outputs. Negative amounts become crops.
 */
function inputGradientPadding(axis: AxisGeometry): { before: number; after: number } {
  const effectiveFilter = (axis.filterSize - 1) * axis.dilation + 1;
  const before = effectiveFilter - 1 - axis.padBefore;
  const after = axis.inSize + axis.padBefore - axis.outSize * axis.stride;
  return { before, after };
}

/** Zero insertion: [B, H, W, C] -> [B, H*sh, W*sw, C] with each value followed by s-1 zeros per axis. */
function insertZeros(
  ops: WasmKernelScope,
  dy: TensorInfo,
  strideHeight: number,
  strideWidth: number,
): TensorInfo {
  if (strideHeight === 1 && strideWidth === 1) return dy;
  const [b, h, w, c] = dy.shape;
  const spread = ops.pad(ops.reshape(dy, [b, h, 1, w, 1, c]), [
    [0, 0],
    [0, 0],
    [0, strideHeight - 1],
    [0, 0],
    [0, strideWidth - 1],
    [0, 0],
  ]);
  return ops.reshape(spread, [b, h * strideHeight, w * strideWidth, c]);
}

/** Crops negative paddings off an NHWC tensor and returns the remaining (non-negative) paddings. */
function cropNegativePadding(
  ops: WasmKernelScope,
  x: TensorInfo,
  height: { before: number; after: number },
  width: { before: number; after: number },
): { x: TensorInfo; pads: [Pair, Pair] } {
  const cropTop = Math.max(-height.before, 0);
  const cropBottom = Math.max(-height.after, 0);
  const cropLeft = Math.max(-width.before, 0);
  const cropRight = Math.max(-width.after, 0);
  const pads: [Pair, Pair] = [
    [Math.max(height.before, 0), Math.max(height.after, 0)],
    [Math.max(width.before, 0), Math.max(width.after, 0)],
  ];
  if (cropTop + cropBottom + cropLeft + cropRight === 0) return { x, pads };
  const [b, h, w, c] = x.shape;
  const cropped = ops.slice(
    x,
    [0, cropTop, cropLeft, 0],
    [b, h - cropTop - cropBottom, w - cropLeft - cropRight, c],
  );
  return { x: cropped, pads };
}

/** dW for a regular convolution, NHWC x [B,H,W,Ci] and dy [B,OH,OW,Co] -> [KH,KW,Ci,Co]. */
export function convFilterGradientNhwc(
  ops: WasmKernelScope,
  x: TensorInfo,
  dy: TensorInfo,
  info: Conv2DInfo,
): TensorInfo {
  const [rows, cols] = axes(info);
  const padH = filterGradientPadding(rows);
  const padW = filterGradientPadding(cols);
  let input = x;
  if (padH.crop + padW.crop > 0) {
    const [b, h, w, c] = x.shape;
    input = ops.slice(x, [0, 0, 0, 0], [b, h - padH.crop, w - padW.crop, c]);
  }
  // Channels become the batch and the batch becomes the contracted channel axis; dy is the filter.
  const inputChannelsFirst = ops.transpose(input, [3, 1, 2, 0]);
  const dyAsFilter = ops.transpose(dy, [1, 2, 0, 3]);
  const grad = ops.conv2d(inputChannelsFirst, dyAsFilter, {
    strides: [rows.dilation, cols.dilation],
    dilations: [rows.stride, cols.stride],
    pads: [
      [padH.before, padH.after],
      [padW.before, padW.after],
    ],
  });
  return ops.transpose(grad, [1, 2, 0, 3]);
}

/** dx for a regular convolution, NHWC dy [B,OH,OW,Co] and filter [KH,KW,Ci,Co] -> [B,H,W,Ci]. */
export function convInputGradientNhwc(
  ops: WasmKernelScope,
  dy: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
): TensorInfo {
  const [rows, cols] = axes(info);
  if (rows.stride > 1 || cols.stride > 1) return stridedConvInputGradientNhwc(ops, dy, filter, info);
  const { x: padded, pads } = cropNegativePadding(
    ops,
    dy,
    inputGradientPadding(rows),
    inputGradientPadding(cols),
  );
  const flipped = ops.transpose(ops.reverse(filter, [0, 1]), [0, 1, 3, 2]);
  return ops.conv2d(padded, flipped, { strides: [1, 1], dilations: [rows.dilation, cols.dilation], pads });
}

/** How one spatial axis of a strided transposed convolution splits into stride-1 phases. */
interface PhaseAxis {
  stride: number;
  /** Per output phase r (dx index = q * stride + r): its filter taps and where they sit in the shared window. */
  phases: Array<{ firstTap: number; taps: number; offset: number }>;
  /** Taps of the shared window all phases fit into. */
  window: number;
  padBefore: number;
  padAfter: number;
  /** dx rows per phase (ceil(inSize / stride)); rows past inSize are cropped after interleaving. */
  rowsPerPhase: number;
}

/**
 * dx row q*s + r collects dy[q + base - j] * W[c + j*s] with c = (r + top) mod s, base = floor((r + top) / s):
 * a stride-1 correlation of dy with every s-th tap. All phases share one padded window so one convolution
 * computes them side by side in the channel axis.
 */
function phaseAxis(axis: AxisGeometry): PhaseAxis {
  const s = axis.stride;
  const raw = Array.from({ length: s }, (_, r) => {
    const shifted = r + axis.padBefore;
    const firstTap = shifted % s;
    const taps = firstTap < axis.filterSize ? Math.ceil((axis.filterSize - firstTap) / s) : 0;
    return { firstTap, taps, padBefore: taps - 1 - Math.floor(shifted / s) };
  });
  const used = raw.filter((p) => p.taps > 0);
  const padBefore = Math.max(...used.map((p) => p.padBefore));
  const phases = raw.map((p) => ({ firstTap: p.firstTap, taps: p.taps, offset: padBefore - p.padBefore }));
  const window = Math.max(...phases.filter((p) => p.taps > 0).map((p) => p.offset + p.taps));
  const rowsPerPhase = Math.ceil(axis.inSize / s);
  const padAfter = rowsPerPhase - axis.outSize - padBefore + window - 1;
  return { stride: s, phases, window, padBefore, padAfter, rowsPerPhase };
}

/**
 * Strided dx without zero insertion (which wastes s*s of the multiply-adds): one stride-1 convolution whose
 * output channels are the s*s phases, then an interleave (a rank-4 transpose). The phase filter is small and
 * assembled in JS from the heap.
 */
function stridedConvInputGradientNhwc(
  ops: WasmKernelScope,
  dy: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
): TensorInfo {
  const [rowAxis, colAxis] = axes(info);
  const rows = phaseAxis(rowAxis);
  const cols = phaseAxis(colAxis);
  const [, kw, ci, co] = filter.shape as Shape4D;
  const phaseCount = rows.stride * cols.stride;
  const weights = ops.backend.typedArrayFromHeap(filter);
  // Read the heap view before any new allocation can grow (and detach) the wasm memory.
  const phaseWeights = new Float32Array(rows.window * cols.window * co * phaseCount * ci);
  rows.phases.forEach((rowPhase, rh) => {
    cols.phases.forEach((colPhase, rw) => {
      for (let th = 0; th < rowPhase.taps; th++) {
        const tapH = rowPhase.firstTap + (rowPhase.taps - 1 - th) * rows.stride;
        for (let tw = 0; tw < colPhase.taps; tw++) {
          const tapW = colPhase.firstTap + (colPhase.taps - 1 - tw) * cols.stride;
          const windowPos = (rowPhase.offset + th) * cols.window + colPhase.offset + tw;
          for (let o = 0; o < co; o++) {
            const target = (windowPos * co + o) * phaseCount * ci + (rh * cols.stride + rw) * ci;
            for (let i = 0; i < ci; i++) {
              phaseWeights[target + i] = weights[((tapH * kw + tapW) * ci + i) * co + o] ?? 0;
            }
          }
        }
      }
    });
  });
  const phaseFilter = ops.tensor(phaseWeights, [rows.window, cols.window, co, phaseCount * ci]);
  const { x: padded, pads } = cropNegativePadding(
    ops,
    dy,
    { before: rows.padBefore, after: rows.padAfter },
    { before: cols.padBefore, after: cols.padAfter },
  );
  const phased = ops.conv2d(padded, phaseFilter, { strides: [1, 1], dilations: [1, 1], pads });
  const b = dy.shape[0] ?? 1;
  const q = rows.rowsPerPhase;
  const p = cols.rowsPerPhase;
  const split = ops.reshape(phased, [b, q, p, rows.stride, cols.stride, ci]);
  const interleaved = ops.reshape(ops.transpose(split, [0, 1, 3, 2, 4, 5]), [
    b,
    q * rows.stride,
    p * cols.stride,
    ci,
  ]);
  if (q * rows.stride === info.inHeight && p * cols.stride === info.inWidth) return interleaved;
  return ops.slice(interleaved, [0, 0, 0, 0], [b, info.inHeight, info.inWidth, ci]);
}

/** dW for a depthwise convolution, x [B,H,W,C] and dy [B,OH,OW,C*M] -> [KH,KW,C,M]. */
export function depthwiseFilterGradientNhwc(
  ops: WasmKernelScope,
  x: TensorInfo,
  dy: TensorInfo,
  info: Conv2DInfo,
  multiplier: number,
): TensorInfo {
  const [rows, cols] = axes(info);
  const padH = filterGradientPadding(rows);
  const padW = filterGradientPadding(cols);
  const [b, h, w, c] = x.shape;
  let input = x;
  if (padH.crop + padW.crop > 0) {
    input = ops.slice(x, [0, 0, 0, 0], [b, h - padH.crop, w - padW.crop, c]);
  }
  const [, hc, wc] = input.shape;
  // Fold the batch into the channels (b*C + c) so each (b, c) pair is its own depthwise channel; the batch is
  // summed afterwards.
  const foldedInput = ops.reshape(ops.transpose(input, [1, 2, 0, 3]), [1, hc, wc, b * c]);
  const foldedDy = ops.reshape(ops.transpose(dy, [1, 2, 0, 3]), [
    info.outHeight,
    info.outWidth,
    b * c,
    multiplier,
  ]);
  const perSample = ops.depthwiseConv2d(foldedInput, foldedDy, {
    strides: [rows.dilation, cols.dilation],
    dilations: [rows.stride, cols.stride],
    pads: [
      [padH.before, padH.after],
      [padW.before, padW.after],
    ],
  });
  const kh = info.filterHeight;
  const kw = info.filterWidth;
  const summed = ops.sum(ops.reshape(perSample, [kh, kw, b, c * multiplier]), [2]);
  return ops.reshape(summed, [kh, kw, c, multiplier]);
}

/** dx for a depthwise convolution, dy [B,OH,OW,C*M] and filter [KH,KW,C,M] -> [B,H,W,C]. */
export function depthwiseInputGradientNhwc(
  ops: WasmKernelScope,
  dy: TensorInfo,
  filter: TensorInfo,
  info: Conv2DInfo,
): TensorInfo {
  const [rows, cols] = axes(info);
  const [kh, kw, c, multiplier] = filter.shape;
  const spread = insertZeros(ops, dy, rows.stride, cols.stride);
  const { x: padded, pads } = cropNegativePadding(
    ops,
    spread,
    inputGradientPadding(rows),
    inputGradientPadding(cols),
  );
  // Each of the C*M dy channels convolves with its own flipped tap set; the M products per input channel add up.
  const flipped = ops.reshape(ops.reverse(filter, [0, 1]), [kh, kw, c * multiplier, 1]);
  const perProduct = ops.depthwiseConv2d(padded, flipped, {
    strides: [1, 1],
    dilations: [rows.dilation, cols.dilation],
    pads,
  });
  if (multiplier === 1) return perProduct;
  const [b, h, w] = perProduct.shape;
  return ops.sum(ops.reshape(perProduct, [b, h, w, c, multiplier]), [4]);
}

interface Conv2DBackpropFilterAttrs {
  strides: number | Pair;
  pad: ConvPad;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: RoundingMode;
  filterShape: Shape4D;
}

interface Conv2DBackpropInputAttrs {
  strides: number | Pair;
  pad: ConvPad;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: RoundingMode;
  inputShape: Shape4D;
}

interface DepthwiseBackpropFilterAttrs {
  strides: number | Pair;
  dilations: number | Pair;
  pad: ConvPad;
  dimRoundingMode?: RoundingMode;
  filterShape: Shape4D;
}

interface DepthwiseBackpropInputAttrs {
  strides: number | Pair;
  dilations: number | Pair;
  pad: ConvPad;
  dimRoundingMode?: RoundingMode;
  inputShape: Shape4D;
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

function dataFormatOf(format: 'NHWC' | 'NCHW' | undefined): 'channelsLast' | 'channelsFirst' {
  return format === 'NCHW' ? 'channelsFirst' : 'channelsLast';
}

export function conv2dBackpropFilterKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = requiredInput(inputs, 'x');
  const dy = requiredInput(inputs, 'dy');
  const a = attrs as unknown as Conv2DBackpropFilterAttrs;
  const format = dataFormatOf(a.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as Shape4D,
    a.filterShape,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
    false,
    format,
  );
  return WasmKernelScope.run(backend as WasmBackendLike, (ops) => {
    const channelsFirst = format === 'channelsFirst';
    const xNhwc = channelsFirst ? ops.transpose(x, NCHW_TO_NHWC) : x;
    const dyNhwc = channelsFirst ? ops.transpose(dy, NCHW_TO_NHWC) : dy;
    return convFilterGradientNhwc(ops, xNhwc, dyNhwc, info);
  });
}

export function conv2dBackpropInputKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const dy = requiredInput(inputs, 'dy');
  const filter = requiredInput(inputs, 'filter');
  const a = attrs as unknown as Conv2DBackpropInputAttrs;
  const format = dataFormatOf(a.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    a.inputShape,
    filter.shape as Shape4D,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
    false,
    format,
  );
  return WasmKernelScope.run(backend as WasmBackendLike, (ops) => {
    if (format === 'channelsLast') return convInputGradientNhwc(ops, dy, filter, info);
    const dx = convInputGradientNhwc(ops, ops.transpose(dy, NCHW_TO_NHWC), filter, info);
    return ops.transpose(dx, NHWC_TO_NCHW);
  });
}

export function depthwiseBackpropFilterKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const x = requiredInput(inputs, 'x');
  const dy = requiredInput(inputs, 'dy');
  const a = attrs as unknown as DepthwiseBackpropFilterAttrs;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as Shape4D,
    a.filterShape,
    a.strides,
    a.dilations,
    a.pad,
    a.dimRoundingMode,
    true,
  );
  return WasmKernelScope.run(backend as WasmBackendLike, (ops) =>
    depthwiseFilterGradientNhwc(ops, x, dy, info, a.filterShape[3]),
  );
}

export function depthwiseBackpropInputKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const dy = requiredInput(inputs, 'dy');
  const filter = requiredInput(inputs, 'filter');
  const a = attrs as unknown as DepthwiseBackpropInputAttrs;
  const info = tf.backend_util.computeConv2DInfo(
    a.inputShape,
    filter.shape as Shape4D,
    a.strides,
    a.dilations,
    a.pad,
    a.dimRoundingMode,
    true,
  );
  return WasmKernelScope.run(backend as WasmBackendLike, (ops) =>
    depthwiseInputGradientNhwc(ops, dy, filter, info),
  );
}
