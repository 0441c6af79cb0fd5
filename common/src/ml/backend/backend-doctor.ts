// What `fedsynth doctor` says about the ML backend: which one is active, on what device, which versions,
// whether it can train, and a measured conv training step so "can train" also means "fast enough to".
import * as tf from '@tensorflow/tfjs';

import type { BackendChoice, BackendDevice } from './backend-selector.js';
import { registeredWasmTrainingKernels } from './wasm-training-kernels.js';

export interface ConvProbeShape {
  batch: number;
  size: number;
  channels: number;
}

export interface ConvProbeResult {
  shape: string;
  /** Median wall time of one training step (two 3x3 convs forward, both filter gradients, one input gradient). */
  msPerStep: number;
  /** Effective throughput of that step (multiply-adds x 2 / time). */
  gflops: number;
}

export interface BackendDescription {
  backend: string;
  device: BackendDevice | 'unknown';
  versions: Record<string, string>;
  trainingCapable: boolean;
  wasm?: { simd: boolean; multithread: boolean; trainingKernels: string[] };
  convProbe: ConvProbeResult;
  /** Training capable and the probe reached MIN_TRAINING_GFLOPS. */
  trainingUsable: boolean;
  verdict: string;
}

export interface DescribeBackendOptions {
  /** The selection result, for device and training capability; without it they are inferred. */
  choice?: BackendChoice;
  probe?: ConvProbeShape;
  probeSteps?: number;
}

/** Below this a U-Net epoch takes hours: wasm here does 5-20 GFLOP/s, the pure-JS cpu backend well under 1. */
export const MIN_TRAINING_GFLOPS = 1;
const DEFAULT_PROBE: ConvProbeShape = { batch: 2, size: 32, channels: 16 };

function inferDevice(name: string): BackendDevice | 'unknown' {
  if (name === 'wasm') return 'cpu-wasm';
  if (name === 'cpu') return 'cpu-js';
  if (name === 'tensorflow') return 'cpu-native';
  return 'unknown';
}

/** Times a small conv training step on the active backend. */
export function measureConvStep(shape: ConvProbeShape = DEFAULT_PROBE, steps = 3): ConvProbeResult {
  const { batch, size, channels } = shape;
  const x = tf.randomNormal<tf.Rank.R4>([batch, size, size, channels], 0, 1, 'float32', 1);
  const w1 = tf.variable(tf.randomNormal<tf.Rank.R4>([3, 3, channels, channels], 0, 0.1, 'float32', 2));
  const w2 = tf.variable(tf.randomNormal<tf.Rank.R4>([3, 3, channels, channels], 0, 0.1, 'float32', 3));
  const step = (): void => {
    const { value, grads } = tf.variableGrads(
      () => tf.mean(tf.square(tf.conv2d(tf.relu(tf.conv2d(x, w1, 1, 'same')), w2, 1, 'same'))),
      [w1, w2],
    );
    // Reading the loss forces the work to finish on asynchronous backends.
    value.dataSync();
    tf.dispose([value, grads]);
  };
  try {
    // Warm-up: first calls pay for JIT and XNNPACK operator setup.
    step();
    step();
    const times: number[] = [];
    for (let i = 0; i < steps; i++) {
      const start = performance.now();
      step();
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    const msPerStep = times[Math.floor(times.length / 2)] ?? Number.NaN;
    const macsPerConv = batch * size * size * 9 * channels * channels;
    const gflops = (5 * macsPerConv * 2) / (msPerStep * 1e6);
    return { shape: `batch ${batch}, ${size}x${size}x${channels}, 3x3 convs`, msPerStep, gflops };
  } finally {
    tf.dispose([x, w1, w2]);
  }
}

export async function describeBackend(options: DescribeBackendOptions = {}): Promise<BackendDescription> {
  await tf.ready();
  const backend = tf.getBackend();
  const device = options.choice?.device ?? inferDevice(backend);
  const trainingKernels = registeredWasmTrainingKernels();
  const trainingCapable =
    options.choice?.trainingCapable ??
    (backend === 'tensorflow' || (backend === 'wasm' && trainingKernels.includes('Conv2DBackpropFilter')));
  const versions: Record<string, string> = { ...tf.version };
  let wasm: BackendDescription['wasm'];
  if (backend === 'wasm') {
    const wasmModule = (await import('@tensorflow/tfjs-backend-wasm')) as { version_wasm?: string };
    if (wasmModule.version_wasm) versions['tfjs-backend-wasm'] = wasmModule.version_wasm;
    wasm = {
      simd: (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true,
      multithread: (await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')) === true,
      trainingKernels,
    };
  }
  const convProbe = measureConvStep(options.probe, options.probeSteps);
  const fastEnough = convProbe.gflops >= MIN_TRAINING_GFLOPS;
  const trainingUsable = trainingCapable && fastEnough;
  const speed = `${convProbe.msPerStep.toFixed(1)} ms/step, ${convProbe.gflops.toFixed(2)} GFLOP/s`;
  let verdict: string;
  if (trainingUsable) verdict = `training usable on ${backend} (${device}): ${speed}`;
  else if (!trainingCapable) verdict = `${backend} is not set up for training (${speed}); inference only`;
  else verdict = `training too slow on ${backend}: ${speed}, below ${MIN_TRAINING_GFLOPS} GFLOP/s`;
  return { backend, device, versions, trainingCapable, wasm, convProbe, trainingUsable, verdict };
}
