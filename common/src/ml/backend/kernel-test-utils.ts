// Helpers for the backend specs: seeded inputs, running the same computation on two backends, and a
// relative-to-max-abs error.
import assert from 'node:assert/strict';

import * as tf from '@tensorflow/tfjs';

import { BackendSelector } from './backend-selector.js';

/** Deterministic values in [-1, 1) (mulberry32), so every run and backend sees the same inputs. */
export function seededValues(count: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

export interface InputSpec {
  shape: number[];
  seed: number;
  dtype?: 'float32' | 'int32';
  /** Explicit values (e.g. int32 indices) instead of seeded ones. */
  values?: Float32Array | Int32Array;
}

export interface Result {
  shape: number[];
  values: Float32Array | Int32Array | Uint8Array;
}

const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export function makeTensor(spec: InputSpec): tf.Tensor {
  const values = spec.values ?? seededValues(sizeOf(spec.shape), spec.seed);
  return tf.tensor(values, spec.shape, spec.dtype ?? 'float32');
}

/**
 * tfjs-backend-cpu 4.22's ResizeNearestNeighborGrad offsets dy by the *images* batch stride, so every sample
 * after the first reads the wrong rows. The reference runs it one sample at a time, where it is right.
 */
export function fixCpuResizeNearestNeighborGrad(): void {
  const stock = tf.getKernel('ResizeNearestNeighborGrad', 'cpu') as
    (tf.KernelConfig & { perSample?: true }) | undefined;
  const slice = tf.getKernel('Slice', 'cpu');
  const concat = tf.getKernel('Concat', 'cpu');
  if (!stock || stock.perSample || !slice || !concat) return;
  tf.unregisterKernel('ResizeNearestNeighborGrad', 'cpu');
  tf.registerKernel({
    ...stock,
    perSample: true,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const images = inputs['images'] as tf.TensorInfo;
      const dy = inputs['dy'] as tf.TensorInfo;
      const temporaries: tf.TensorInfo[] = [];
      const sample = (x: tf.TensorInfo, i: number): tf.TensorInfo => {
        const part = slice.kernelFunc({
          inputs: { x },
          backend,
          attrs: { begin: [i, 0, 0, 0], size: [1, ...x.shape.slice(1)] },
        }) as tf.TensorInfo;
        temporaries.push(part);
        return part;
      };
      const grads = Array.from({ length: images.shape[0] ?? 1 }, (_, i) => {
        const grad = stock.kernelFunc({
          inputs: { images: sample(images, i), dy: sample(dy, i) },
          backend,
          attrs,
        });
        temporaries.push(grad as tf.TensorInfo);
        return grad as tf.TensorInfo;
      });
      const out = concat.kernelFunc({
        inputs: grads as unknown as tf.NamedTensorInfoMap,
        backend,
        attrs: { axis: 0 },
      });
      const cpu = backend as { disposeIntermediateTensorInfo(info: tf.TensorInfo): void };
      temporaries.forEach((info) => cpu.disposeIntermediateTensorInfo(info));
      return out;
    },
  } as tf.KernelConfig);
}

/** Makes the wasm backend (with the training kernels) and cpu available to switch between. */
export async function prepareBackends(): Promise<void> {
  fixCpuResizeNearestNeighborGrad();
  await new BackendSelector().select({ prefer: 'wasm', logger: () => undefined });
  await tf.setBackend('cpu');
  await tf.setBackend('wasm');
}

/** Runs `compute` on `backend` with fresh tensors built from `inputs`; returns every output's values. */
export async function runOn(
  backend: string,
  inputs: Record<string, InputSpec>,
  compute: (tensors: Record<string, tf.Tensor>) => tf.Tensor | tf.Tensor[],
): Promise<Result[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const tensors = Object.fromEntries(
      Object.entries(inputs).map(([name, spec]) => [name, makeTensor(spec)]),
    );
    const out = compute(tensors);
    return (Array.isArray(out) ? out : [out]).map((t) => ({
      shape: [...t.shape],
      values: t.dataSync().slice(),
    }));
  });
}

/** Runs one kernel directly (all attributes exactly as given) on `backend`. */
export function runKernelOn(
  backend: string,
  kernelName: string,
  inputs: Record<string, InputSpec>,
  attrs: tf.NamedAttrMap,
): Promise<Result[]> {
  return runOn(backend, inputs, (tensors) => tf.engine().runKernel(kernelName, tensors, attrs) as tf.Tensor);
}

/** max |actual - expected| / max |expected| (absolute error when expected is all zeros). */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < expected.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(expected[i] ?? 0));
    const diff = Math.abs((actual[i] ?? 0) - (expected[i] ?? 0));
    maxDiff = Number.isNaN(diff) ? Number.POSITIVE_INFINITY : Math.max(maxDiff, diff);
  }
  return maxAbs === 0 ? maxDiff : maxDiff / maxAbs;
}

export function assertClose(actual: Result[], expected: Result[], label: string, tolerance = 1e-4): void {
  assert.equal(actual.length, expected.length, `${label}: number of outputs`);
  expected.forEach((want, i) => {
    const got = actual[i];
    assert.ok(got, `${label}: output ${i} missing`);
    assert.deepEqual(got.shape, want.shape, `${label}: output ${i} shape`);
    const error = relativeError(got.values, want.values);
    assert.ok(
      error <= tolerance,
      `${label}: output ${i} relative error ${error.toExponential(2)} > ${tolerance}`,
    );
  });
}
