// The replaced wasm kernels (fast paths and their fallbacks) and UnsortedSegmentSum against the cpu backend.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import {
  assertClose,
  prepareBackends,
  relativeError,
  runKernelOn,
  runOn,
  seededValues,
  type InputSpec,
} from './kernel-test-utils.js';
import { canonicalTranspose } from './wasm-fast-paths.js';

interface KernelCase {
  label: string;
  kernel: string;
  inputs: Record<string, InputSpec>;
  attrs: tf.NamedAttrMap;
}

const spec = (shape: number[], seed: number): InputSpec => ({ shape, seed });

const CASES: KernelCase[] = [
  // BatchMatMul: every transpose combination, batched A with shared B (fast path), batched B (stock fallback).
  ...[
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ].map(([transposeA, transposeB]) => ({
    label: `2-D tA=${transposeA} tB=${transposeB}`,
    kernel: 'BatchMatMul',
    inputs: { a: spec(transposeA ? [7, 5] : [5, 7], 1), b: spec(transposeB ? [3, 7] : [7, 3], 2) },
    attrs: { transposeA, transposeB } as tf.NamedAttrMap,
  })),
  {
    label: 'batched A, shared B',
    kernel: 'BatchMatMul',
    inputs: { a: spec([2, 3, 5, 7], 1), b: spec([7, 4], 2) },
    attrs: { transposeA: false, transposeB: false },
  },
  {
    label: 'batched A transposed, shared B transposed with unit batch',
    kernel: 'BatchMatMul',
    inputs: { a: spec([2, 3, 7, 5], 1), b: spec([1, 4, 7], 2) },
    attrs: { transposeA: true, transposeB: true },
  },
  {
    label: 'both batched (stock path)',
    kernel: 'BatchMatMul',
    inputs: { a: spec([6, 5, 7], 1), b: spec([6, 4, 7], 2) },
    attrs: { transposeA: false, transposeB: true },
  },
  {
    label: 'fused, B transposed, bias + relu',
    kernel: '_FusedMatMul',
    inputs: { a: spec([9, 7], 1), b: spec([4, 7], 2), bias: spec([4], 3) },
    attrs: { transposeA: false, transposeB: true, activation: 'relu' },
  },
  {
    label: 'fused, batched A transposed',
    kernel: '_FusedMatMul',
    inputs: { a: spec([3, 7, 9], 1), b: spec([7, 4], 2), bias: spec([4], 3) },
    attrs: { transposeA: true, transposeB: false, activation: 'linear' },
  },
  { label: 'rank 4', kernel: 'LeakyRelu', inputs: { x: spec([2, 5, 6, 3], 1) }, attrs: { alpha: 0.01 } },
  { label: 'rank 1', kernel: 'LeakyRelu', inputs: { x: spec([17], 1) }, attrs: { alpha: 0.2 } },
  {
    label: 'per-channel mean map',
    kernel: 'Tile',
    inputs: { x: spec([2, 1, 1, 3], 1) },
    attrs: { reps: [1, 4, 5, 1] },
  },
  { label: '2-D', kernel: 'Tile', inputs: { x: spec([2, 3], 1) }, attrs: { reps: [3, 2] } },
  { label: 'mixed', kernel: 'Tile', inputs: { x: spec([2, 3, 4], 1) }, attrs: { reps: [2, 1, 3] } },
  {
    label: 'rank 8 after interleaving (stock)',
    kernel: 'Tile',
    inputs: { x: spec([2, 3, 2, 2], 1) },
    attrs: { reps: [2, 2, 2, 2] },
  },
  {
    label: '2x2 windows',
    kernel: 'AvgPoolGrad',
    inputs: { dy: spec([2, 3, 4, 3], 1), input: spec([2, 6, 8, 3], 2) },
    attrs: { filterSize: 2, strides: 2, pad: 'valid' },
  },
  {
    label: '2x3 windows, leftover rows and columns',
    kernel: 'AvgPoolGrad',
    inputs: { dy: spec([2, 3, 2, 3], 1), input: spec([2, 7, 8, 3], 2) },
    attrs: { filterSize: [2, 3], strides: [2, 3], pad: 'valid' },
  },
  {
    label: 'same padding on odd size (stock)',
    kernel: 'AvgPoolGrad',
    inputs: { dy: spec([2, 4, 4, 3], 1), input: spec([2, 7, 8, 3], 2) },
    attrs: { filterSize: 2, strides: 2, pad: 'same' },
  },
  {
    label: 'overlapping 3x3/2 (stock)',
    kernel: 'AvgPoolGrad',
    inputs: { dy: spec([1, 3, 3, 2], 1), input: spec([1, 7, 7, 2], 2) },
    attrs: { filterSize: 3, strides: 2, pad: 'valid' },
  },
  ...(
    [
      ['2x2/2 valid, ties from ReLU zeros', [2, 6, 8, 3], 2, 2, 'valid'],
      ['2x2/2 same, odd size', [2, 7, 5, 3], 2, 2, 'same'],
      ['3x3/2 overlapping, valid', [1, 9, 8, 2], 3, 2, 'valid'],
      ['3x3/1 same', [2, 5, 6, 4], 3, 1, 'same'],
      ['3x2/[2,1] same', [1, 7, 6, 2], [3, 2], [2, 1], 'same'],
    ] as Array<[string, number[], number | number[], number | number[], 'same' | 'valid']>
  ).map(([label, shape, filterSize, strides, pad]) => {
    const info = tf.backend_util.computePool2DInfo(
      shape as [number, number, number, number],
      filterSize as number,
      strides as number,
      1,
      pad,
    );
    // Half the inputs are exactly 0 (as after a ReLU), so windows often hold tied maxima.
    const values = seededValues(
      shape.reduce((a, b) => a * b, 1),
      5,
    ).map((v) => Math.max(v, 0));
    return {
      label,
      kernel: 'MaxPoolGrad',
      inputs: {
        dy: spec(info.outShape, 6),
        input: { shape, seed: 5, values },
        output: spec(info.outShape, 7),
      },
      attrs: { filterSize, strides, pad } as tf.NamedAttrMap,
    };
  }),
  // The cpu reference runs per sample: its own kernel is wrong for batch > 1 (see kernel-test-utils).
  ...[false, true].map((halfPixelCenters) => ({
    label: `x2 / x2, halfPixelCenters=${halfPixelCenters}`,
    kernel: 'ResizeNearestNeighborGrad',
    inputs: { images: spec([2, 3, 5, 3], 1), dy: spec([2, 6, 10, 3], 2) },
    attrs: { alignCorners: false, halfPixelCenters },
  })),
  {
    label: 'x4 / x2',
    kernel: 'ResizeNearestNeighborGrad',
    inputs: { images: spec([3, 3, 5, 2], 1), dy: spec([3, 12, 10, 2], 2) },
    attrs: { alignCorners: false, halfPixelCenters: false },
  },
  {
    label: 'x3 (stock)',
    kernel: 'ResizeNearestNeighborGrad',
    inputs: { images: spec([1, 3, 5, 3], 1), dy: spec([1, 9, 10, 3], 2) },
    attrs: { alignCorners: false, halfPixelCenters: false },
  },
  {
    label: 'alignCorners (stock)',
    kernel: 'ResizeNearestNeighborGrad',
    inputs: { images: spec([1, 3, 5, 3], 1), dy: spec([1, 6, 10, 3], 2) },
    attrs: { alignCorners: true, halfPixelCenters: false },
  },
  ...(
    [
      [
        [128, 16, 3, 3, 4],
        [2, 0, 3, 1, 4],
      ],
      [
        [3, 16, 3, 4, 5],
        [1, 3, 0, 2, 4],
      ],
      [
        [2, 3, 4, 5, 6, 7],
        [5, 3, 1, 0, 4, 2],
      ],
      [
        [2, 1, 4, 5, 1, 7],
        [5, 3, 1, 0, 4, 2],
      ],
      [
        [2, 4, 3, 4, 3, 5],
        [0, 1, 3, 2, 4, 5],
      ],
      [
        [2, 3, 4, 5],
        [0, 2, 3, 1],
      ],
      [
        [2, 3, 4, 5],
        [3, 2, 1, 0],
      ],
      [
        [1, 1, 6],
        [2, 0, 1],
      ],
    ] as Array<[number[], number[]]>
  ).map(([shape, perm]) => ({
    label: `${shape.join('x')} perm ${perm.join(',')}`,
    kernel: 'Transpose',
    inputs: { x: spec(shape, 1) },
    attrs: { perm },
  })),
  { label: 'float', kernel: 'Identity', inputs: { x: spec([3, 4], 1) }, attrs: {} },
  {
    label: 'channel half (short rows)',
    kernel: 'Slice',
    inputs: { x: spec([4, 6, 5, 32], 1) },
    attrs: { begin: [0, 0, 0, 16], size: [4, 6, 5, 16] },
  },
  {
    label: 'box with -1 size',
    kernel: 'Slice',
    inputs: { x: spec([3, 6, 5, 4], 1) },
    attrs: { begin: [1, 2, 1, 0], size: [2, -1, 3, 4] },
  },
  {
    label: 'rank 5',
    kernel: 'Slice',
    inputs: { x: spec([2, 3, 4, 5, 6], 1) },
    attrs: { begin: [1, 0, 1, 2, 3], size: [1, 3, 2, 2, 3] },
  },
  {
    label: 'long rows',
    kernel: 'Slice',
    inputs: { x: spec([3, 100], 1) },
    attrs: { begin: [1, 10], size: [2, 80] },
  },
  {
    label: 'channels',
    kernel: 'SplitV',
    inputs: { x: spec([2, 3, 4, 32], 1) },
    attrs: { numOrSizeSplits: [16, 8, 8], axis: 3 },
  },
  {
    label: 'batch, equal parts',
    kernel: 'SplitV',
    inputs: { x: spec([4, 3, 5], 1) },
    attrs: { numOrSizeSplits: 2, axis: 0 },
  },
  {
    label: 'inferred size',
    kernel: 'SplitV',
    inputs: { x: spec([4, 6, 5], 1) },
    attrs: { numOrSizeSplits: [1, -1], axis: -2 },
  },
  {
    label: 'repeated ids',
    kernel: 'UnsortedSegmentSum',
    inputs: {
      x: spec([6, 3], 7),
      segmentIds: { shape: [6], seed: 0, dtype: 'int32', values: new Int32Array([1, 0, 1, 4, 2, 1]) },
    },
    attrs: { numSegments: 5 },
  },
  {
    label: 'rank 3 rows, ids out of range dropped',
    kernel: 'UnsortedSegmentSum',
    inputs: {
      x: spec([5, 2, 2], 7),
      segmentIds: { shape: [5], seed: 0, dtype: 'int32', values: new Int32Array([2, -1, 0, 3, 1]) },
    },
    attrs: { numSegments: 3 },
  },
];

describe('replaced and added wasm kernels match the cpu backend', () => {
  before(prepareBackends);

  for (const c of CASES) {
    it(`${c.kernel}: ${c.label}`, async () => {
      await tf.setBackend('wasm');
      const buffersBefore = tf.backend().numDataIds();
      const actual = await runKernelOn('wasm', c.kernel, c.inputs, c.attrs);
      assert.equal(tf.backend().numDataIds(), buffersBefore, 'wasm buffers leaked');
      assertClose(actual, await runKernelOn('cpu', c.kernel, c.inputs, c.attrs), c.label);
    });
  }

  it('Concat matches cpu along every axis, with empty and long-row inputs', async () => {
    const cases: Array<[number[][], number]> = [
      [
        [
          [2, 3, 4, 16],
          [2, 3, 4, 8],
          [2, 3, 4, 40],
        ],
        3,
      ],
      [
        [
          [2, 3],
          [2, 0],
          [2, 5],
        ],
        1,
      ],
      [
        [
          [1, 4],
          [3, 4],
        ],
        0,
      ],
      [
        [
          [2, 3, 5],
          [2, 2, 5],
        ],
        -2,
      ],
    ];
    for (const [shapes, axis] of cases) {
      const inputs = Object.fromEntries(shapes.map((shape, i) => [`t${i}`, { shape, seed: i + 1 }]));
      const compute = (t: Record<string, tf.Tensor>) => tf.concat(Object.values(t), axis);
      assertClose(
        await runOn('wasm', inputs, compute),
        await runOn('cpu', inputs, compute),
        `concat ${axis}`,
      );
    }
  });

  it('ResizeNearestNeighborGrad with batch > 1 sums each 2x2 block of its own sample', async () => {
    const [b, h, w, c] = [3, 2, 3, 2];
    const dyValues = seededValues(b * 2 * h * 2 * w * c, 9);
    const expected = new Float32Array(b * h * w * c);
    for (let n = 0; n < b; n++)
      for (let y = 0; y < 2 * h; y++)
        for (let x = 0; x < 2 * w; x++)
          for (let k = 0; k < c; k++) {
            const target = ((n * h + Math.floor(y / 2)) * w + Math.floor(x / 2)) * c + k;
            expected[target] =
              (expected[target] ?? 0) + (dyValues[((n * 2 * h + y) * 2 * w + x) * c + k] ?? 0);
          }
    const [actual] = await runKernelOn(
      'wasm',
      'ResizeNearestNeighborGrad',
      {
        images: { shape: [b, h, w, c], seed: 1 },
        dy: { shape: [b, 2 * h, 2 * w, c], seed: 9, values: dyValues },
      },
      { alignCorners: false, halfPixelCenters: false },
    );
    assert.ok(actual);
    assert.ok(relativeError(actual.values, expected) <= 1e-6);
  });

  it('Identity shares the buffer instead of copying it', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor([1, 2, 3]);
    const buffers = tf.backend().numDataIds();
    const copy = tf.engine().runKernel('Identity', { x }) as tf.Tensor;
    assert.equal(tf.backend().numDataIds(), buffers);
    x.dispose();
    assert.deepEqual(Array.from(copy.dataSync()), [1, 2, 3]);
    copy.dispose();
  });
});

describe('canonicalTranspose', () => {
  it('drops unit axes and merges axes that stay neighbours', () => {
    assert.deepEqual(canonicalTranspose([2, 1, 3, 4], [0, 2, 3, 1]), { shape: [24], perm: [0] });
    assert.deepEqual(canonicalTranspose([2, 3, 4, 5], [0, 2, 3, 1]), { shape: [2, 3, 20], perm: [0, 2, 1] });
    assert.deepEqual(canonicalTranspose([8, 4, 2, 4, 2, 48], [0, 1, 3, 2, 4, 5]), {
      shape: [32, 2, 4, 96],
      perm: [0, 2, 1, 3],
    });
    assert.deepEqual(canonicalTranspose([5, 6, 7], [2, 0, 1]), { shape: [30, 7], perm: [1, 0] });
  });
});
