// Kernels the stock tfjs wasm backend lacks (or runs slowly) for training conv nets and small transformers,
// registered on top of wasm's own fast kernels. See wasm-conv-gradients.ts and wasm-fast-paths.ts for the maths.
import * as tf from '@tensorflow/tfjs';

import {
  conv2dBackpropFilterKernel,
  conv2dBackpropInputKernel,
  depthwiseBackpropFilterKernel,
  depthwiseBackpropInputKernel,
} from './wasm-conv-gradients.js';
import { fastConcatFactory, fastSliceFactory, fastSplitVFactory } from './wasm-copy-kernels.js';
import {
  type KernelFactory,
  fastAvgPoolGradFactory,
  fastLeakyReluFactory,
  fastMatMulFactory,
  fastResizeNearestGradFactory,
  fastTileFactory,
  fastTransposeFactory,
  sharedIdentityFactory,
} from './wasm-fast-paths.js';
import { fastMaxPoolGradFactory } from './wasm-max-pool-grad.js';
import { unsortedSegmentSumKernel } from './wasm-segment-sum.js';

const always =
  (kernelFunc: tf.KernelFunc): KernelFactory =>
  () =>
    kernelFunc;

/** Kernel name -> how to build our version from the stock wasm kernel (undefined when stock has none). */
const KERNEL_FACTORIES = {
  // Missing from stock wasm: training fails without them.
  Conv2DBackpropFilter: always(conv2dBackpropFilterKernel),
  DepthwiseConv2dNativeBackpropFilter: always(depthwiseBackpropFilterKernel),
  DepthwiseConv2dNativeBackpropInput: always(depthwiseBackpropInputKernel),
  UnsortedSegmentSum: always(unsortedSegmentSumKernel),
  // Present but slow: replaced, with the stock kernel kept as fallback and for unregistering.
  Conv2DBackpropInput: always(conv2dBackpropInputKernel),
  BatchMatMul: fastMatMulFactory('BatchMatMul'),
  _FusedMatMul: fastMatMulFactory('_FusedMatMul'),
  LeakyRelu: fastLeakyReluFactory,
  Tile: fastTileFactory,
  Transpose: fastTransposeFactory,
  Identity: sharedIdentityFactory,
  Slice: fastSliceFactory,
  SplitV: fastSplitVFactory,
  Concat: fastConcatFactory,
  AvgPoolGrad: fastAvgPoolGradFactory,
  MaxPoolGrad: fastMaxPoolGradFactory,
  ResizeNearestNeighborGrad: fastResizeNearestGradFactory,
} satisfies Record<string, KernelFactory>;

export type WasmTrainingKernelName = keyof typeof KERNEL_FACTORIES;

export const WASM_TRAINING_KERNEL_NAMES = Object.keys(KERNEL_FACTORIES) as WasmTrainingKernelName[];

/**
 * Our configs carry a marker and the stock kernel they replaced, in the global registry itself, so registering
 * is idempotent and reversible even if this module is loaded twice.
 */
interface FedsynthKernelConfig extends tf.KernelConfig {
  fedsynthTrainingKernel: true;
  replacedStock?: tf.KernelConfig;
}

function ourConfig(name: string): FedsynthKernelConfig | undefined {
  const config = tf.getKernel(name, 'wasm') as Partial<FedsynthKernelConfig> | undefined;
  return config?.fedsynthTrainingKernel ? (config as FedsynthKernelConfig) : undefined;
}

export interface WasmKernelRegistration {
  /** Kernels this call added or replaced. */
  registered: WasmTrainingKernelName[];
  /** Of those, the ones that replaced a stock wasm kernel (kept for fallback and unregistering). */
  replacedStock: WasmTrainingKernelName[];
  /** Already ours before this call. */
  alreadyRegistered: WasmTrainingKernelName[];
}

/**
 * Registers the training kernels for backend 'wasm'. Idempotent. Works before or after the wasm backend is
 * initialised.
 */
export function registerWasmTrainingKernels(
  names: readonly WasmTrainingKernelName[] = WASM_TRAINING_KERNEL_NAMES,
): WasmKernelRegistration {
  if (!tf.getKernel('Conv2D', 'wasm')) {
    // Importing the package later would register its stock kernels over ours.
    throw new Error("import '@tensorflow/tfjs-backend-wasm' before registering the wasm training kernels");
  }
  const result: WasmKernelRegistration = { registered: [], replacedStock: [], alreadyRegistered: [] };
  for (const name of names) {
    if (ourConfig(name)) {
      result.alreadyRegistered.push(name);
      continue;
    }
    const stock = tf.getKernel(name, 'wasm');
    if (stock) {
      // Unregister first: registerKernel over an existing entry logs a warning.
      tf.unregisterKernel(name, 'wasm');
      result.replacedStock.push(name);
    }
    const config: FedsynthKernelConfig = {
      kernelName: name,
      backendName: 'wasm',
      kernelFunc: KERNEL_FACTORIES[name](stock),
      // The engine runs setupFunc only for kernels registered when the backend initialises; the stock kernel
      // binds its wasm function there, and our fallback to it needs that binding.
      setupFunc: stock?.setupFunc,
      disposeFunc: stock?.disposeFunc,
      fedsynthTrainingKernel: true,
      replacedStock: stock,
    };
    tf.registerKernel(config);
    result.registered.push(name);
  }
  return result;
}

/** Removes our kernels and puts back any stock wasm kernel they replaced (used to compare against stock). */
export function unregisterWasmTrainingKernels(
  names: readonly WasmTrainingKernelName[] = WASM_TRAINING_KERNEL_NAMES,
): void {
  for (const name of names) {
    const config = ourConfig(name);
    if (!config) continue;
    tf.unregisterKernel(name, 'wasm');
    const stock = config.replacedStock;
    if (!stock) continue;
    tf.registerKernel(stock);
    // A stock kernel put back after the backend initialised must bind its wasm function by hand.
    const initialisedWasm = tf.engine().registry['wasm'];
    if (initialisedWasm && stock.setupFunc) stock.setupFunc(initialisedWasm);
  }
}

/** Which of our kernels are currently registered for wasm. */
export function registeredWasmTrainingKernels(): WasmTrainingKernelName[] {
  return WASM_TRAINING_KERNEL_NAMES.filter((name) => ourConfig(name) !== undefined);
}
