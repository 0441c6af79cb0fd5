// The wasm convolution gradient kernels against the cpu backend (the reference), on seeded random inputs.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { assertClose, prepareBackends, runKernelOn, runOn, type InputSpec } from './kernel-test-utils.js';

type Pad = 'same' | 'valid' | tf.backend_util.ExplicitPadding;
type Shape4 = [number, number, number, number];

interface ConvCase {
  batch: number;
  height: number;
  width: number;
  inChannels: number;
  outChannels: number;
  kernel: [number, number];
  strides: number | [number, number];
  pad: Pad;
}

const CONV_CASES: ConvCase[] = [
  { batch: 2, height: 7, width: 9, inChannels: 3, outChannels: 5, kernel: [3, 3], strides: 1, pad: 'same' },
  { batch: 2, height: 8, width: 8, inChannels: 3, outChannels: 4, kernel: [3, 3], strides: 2, pad: 'same' },
  { batch: 1, height: 9, width: 7, inChannels: 2, outChannels: 3, kernel: [3, 3], strides: 2, pad: 'valid' },
  {
    batch: 3,
    height: 10,
    width: 10,
    inChannels: 4,
    outChannels: 2,
    kernel: [2, 2],
    strides: 2,
    pad: 'valid',
  },
  { batch: 2, height: 6, width: 5, inChannels: 3, outChannels: 3, kernel: [1, 1], strides: 1, pad: 'valid' },
  { batch: 2, height: 9, width: 8, inChannels: 4, outChannels: 3, kernel: [1, 1], strides: 2, pad: 'same' },
  { batch: 2, height: 7, width: 7, inChannels: 3, outChannels: 2, kernel: [4, 4], strides: 2, pad: 'same' },
  { batch: 2, height: 8, width: 9, inChannels: 3, outChannels: 4, kernel: [5, 5], strides: 3, pad: 'same' },
  {
    batch: 1,
    height: 5,
    width: 6,
    inChannels: 2,
    outChannels: 3,
    kernel: [3, 2],
    strides: [1, 2],
    pad: 'valid',
  },
  {
    batch: 2,
    height: 11,
    width: 9,
    inChannels: 3,
    outChannels: 2,
    kernel: [3, 3],
    strides: 2,
    pad: [
      [0, 0],
      [2, 0],
      [1, 3],
      [0, 0],
    ],
  },
];

function describeCase(c: ConvCase): string {
  return `${c.batch}x${c.height}x${c.width}x${c.inChannels}->${c.outChannels} k${c.kernel.join('x')} s${c.strides} ${JSON.stringify(c.pad)}`;
}

function outShapeOf(c: ConvCase, dilation = 1, depthwise = false): Shape4 {
  const filter: Shape4 = [...c.kernel, c.inChannels, c.outChannels];
  const info = tf.backend_util.computeConv2DInfo(
    [c.batch, c.height, c.width, c.inChannels],
    filter,
    c.strides,
    dilation,
    c.pad,
    undefined,
    depthwise,
  );
  return info.outShape;
}

/** Leaked intermediates would stay in the backend without ever becoming engine tensors. */
function backendBuffers(): number {
  return tf.backend().numDataIds();
}

describe('wasm Conv2D gradient kernels match the cpu backend', () => {
  before(prepareBackends);

  for (const c of CONV_CASES) {
    it(`Conv2DBackpropFilter and Conv2DBackpropInput: ${describeCase(c)}`, async () => {
      const filterShape: Shape4 = [...c.kernel, c.inChannels, c.outChannels];
      const inputShape: Shape4 = [c.batch, c.height, c.width, c.inChannels];
      const dy: InputSpec = { shape: outShapeOf(c), seed: 2 };
      const filterInputs = { x: { shape: inputShape, seed: 1 }, dy };
      const filterAttrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape };
      const inputInputs = { dy, filter: { shape: filterShape, seed: 3 } };
      const inputAttrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape };

      await tf.setBackend('wasm');
      const buffersBefore = backendBuffers();
      const dW = await runKernelOn('wasm', 'Conv2DBackpropFilter', filterInputs, filterAttrs);
      const dx = await runKernelOn('wasm', 'Conv2DBackpropInput', inputInputs, inputAttrs);
      await tf.setBackend('wasm');
      assert.equal(backendBuffers(), buffersBefore, 'wasm buffers leaked');

      assertClose(dW, await runKernelOn('cpu', 'Conv2DBackpropFilter', filterInputs, filterAttrs), 'dW');
      assertClose(dx, await runKernelOn('cpu', 'Conv2DBackpropInput', inputInputs, inputAttrs), 'dx');
    });
  }

  it('handles NCHW data (transposed around the NHWC maths)', async () => {
    const inputShape: Shape4 = [2, 3, 7, 6];
    const filterShape: Shape4 = [3, 3, 3, 4];
    const dy: InputSpec = { shape: [2, 4, 4, 3], seed: 5 };
    const filterCase = { x: { shape: inputShape, seed: 4 }, dy };
    const attrs = { strides: 2, pad: 'same', dataFormat: 'NCHW' };
    for (const backend of ['wasm', 'cpu']) await tf.setBackend(backend);
    assertClose(
      await runKernelOn('wasm', 'Conv2DBackpropFilter', filterCase, { ...attrs, filterShape }),
      await runKernelOn('cpu', 'Conv2DBackpropFilter', filterCase, { ...attrs, filterShape }),
      'NCHW dW',
    );
    const inputCase = { dy, filter: { shape: filterShape, seed: 6 } };
    assertClose(
      await runKernelOn('wasm', 'Conv2DBackpropInput', inputCase, { ...attrs, inputShape }),
      await runKernelOn('cpu', 'Conv2DBackpropInput', inputCase, { ...attrs, inputShape }),
      'NCHW dx',
    );
  });

  it('gives conv2d and conv2dTranspose the same gradients as cpu through tf.grads', async () => {
    const inputs = {
      x: { shape: [2, 9, 8, 3], seed: 11 },
      w: { shape: [3, 3, 3, 5], seed: 12 },
      up: { shape: [2, 2, 4, 5], seed: 13 },
      r: { shape: [2, 10, 8, 4], seed: 14 },
    };
    const compute = ({ x, w, up, r }: Record<string, tf.Tensor>) => {
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
        const down = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same');
        const upsampled = tf.conv2dTranspose(down, c as tf.Tensor4D, [2, 10, 8, 4], 2, 'same');
        return tf.sum(tf.mul(upsampled, r as tf.Tensor4D));
      };
      return tf.grads(f)([x as tf.Tensor, w as tf.Tensor, up as tf.Tensor]);
    };
    assertClose(await runOn('wasm', inputs, compute), await runOn('cpu', inputs, compute), 'grads');
  });
});

interface DepthwiseCase {
  batch: number;
  size: [number, number];
  channels: number;
  multiplier: number;
  kernel: number;
  strides: number;
  dilation: number;
  pad: Pad;
}

const DEPTHWISE_CASES: DepthwiseCase[] = [
  { batch: 2, size: [7, 9], channels: 3, multiplier: 1, kernel: 3, strides: 1, dilation: 1, pad: 'same' },
  { batch: 2, size: [8, 8], channels: 3, multiplier: 2, kernel: 3, strides: 2, dilation: 1, pad: 'same' },
  { batch: 1, size: [9, 7], channels: 2, multiplier: 3, kernel: 3, strides: 1, dilation: 1, pad: 'valid' },
  { batch: 3, size: [7, 8], channels: 3, multiplier: 1, kernel: 2, strides: 2, dilation: 1, pad: 'valid' },
  { batch: 2, size: [9, 9], channels: 2, multiplier: 2, kernel: 3, strides: 1, dilation: 2, pad: 'same' },
  { batch: 1, size: [10, 11], channels: 3, multiplier: 1, kernel: 2, strides: 1, dilation: 3, pad: 'valid' },
];

/** A dilated filter written out with zeros between taps: what the cpu kernels (dilation 1 only) can check. */
function dilateFilter(filter: tf.Tensor4D, dilation: number): tf.Tensor4D {
  if (dilation === 1) return filter;
  const [kh, kw, c, m] = filter.shape;
  const wide = tf.buffer([(kh - 1) * dilation + 1, (kw - 1) * dilation + 1, c, m]);
  filter
    .arraySync()
    .forEach((row, i) =>
      row.forEach((column, j) =>
        column.forEach((channel, k) =>
          channel.forEach((v, n) => wide.set(v, i * dilation, j * dilation, k, n)),
        ),
      ),
    );
  return wide.toTensor() as tf.Tensor4D;
}

describe('wasm depthwise gradient kernels match the cpu backend', () => {
  before(prepareBackends);

  for (const c of DEPTHWISE_CASES) {
    const label = `${c.batch}x${c.size.join('x')}x${c.channels} m${c.multiplier} k${c.kernel} s${c.strides} d${c.dilation} ${c.pad}`;
    it(`DepthwiseConv2dNativeBackpropFilter and ...Input: ${label}`, async () => {
      const inputShape: Shape4 = [c.batch, ...c.size, c.channels];
      const filterShape: Shape4 = [c.kernel, c.kernel, c.channels, c.multiplier];
      const outShape = tf.backend_util.computeConv2DInfo(
        inputShape,
        filterShape,
        c.strides,
        c.dilation,
        c.pad,
        undefined,
        true,
      ).outShape;
      const inputs = {
        x: { shape: inputShape, seed: 21 },
        dy: { shape: outShape, seed: 22 },
        filter: { shape: filterShape, seed: 23 },
      };
      const attrs = { strides: c.strides, dilations: c.dilation, pad: c.pad };
      const onWasm = ({ x, dy, filter }: Record<string, tf.Tensor>) => [
        tf
          .engine()
          .runKernel(
            'DepthwiseConv2dNativeBackpropFilter',
            { x, dy },
            { ...attrs, filterShape },
          ) as tf.Tensor,
        tf
          .engine()
          .runKernel(
            'DepthwiseConv2dNativeBackpropInput',
            { dy, filter },
            { ...attrs, inputShape },
          ) as tf.Tensor,
      ];
      // The cpu kernels ignore dilation, so the reference uses the dilated filter written out (dilation 1) and
      // keeps every dilation-th tap of its filter gradient.
      const onCpu = ({ x, dy, filter }: Record<string, tf.Tensor>) => {
        const wide = dilateFilter(filter as tf.Tensor4D, c.dilation);
        const cpuAttrs = { strides: c.strides, dilations: 1, pad: c.pad };
        const wideGrad = tf
          .engine()
          .runKernel(
            'DepthwiseConv2dNativeBackpropFilter',
            { x, dy },
            { ...cpuAttrs, filterShape: wide.shape },
          ) as tf.Tensor4D;
        const dW = tf.stridedSlice(wideGrad, [0, 0, 0, 0], wide.shape, [c.dilation, c.dilation, 1, 1]);
        const dx = tf
          .engine()
          .runKernel('DepthwiseConv2dNativeBackpropInput', { dy, filter: wide }, { ...cpuAttrs, inputShape });
        return [dW, dx as tf.Tensor];
      };
      assertClose(await runOn('wasm', inputs, onWasm), await runOn('cpu', inputs, onCpu), label);
    });
  }

  it('gives depthwiseConv2d the same gradients as cpu through tf.grads', async () => {
    const inputs = { x: { shape: [2, 7, 6, 3], seed: 31 }, w: { shape: [3, 3, 3, 2], seed: 32 } };
    const compute = ({ x, w }: Record<string, tf.Tensor>) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.square(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same'))),
      )([x as tf.Tensor, w as tf.Tensor]);
    assertClose(await runOn('wasm', inputs, compute), await runOn('cpu', inputs, compute), 'grads');
  });
});
