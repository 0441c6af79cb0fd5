// The tfjs backend layer: pick the fastest backend at run time and make wasm able to train conv nets fast.
export {
  BACKEND_ENV_VAR,
  BackendSelector,
  NodeTfjsRuntime,
  parseBackendPreference,
  selectBackend,
  type BackendAttempt,
  type BackendCandidate,
  type BackendChoice,
  type BackendDevice,
  type BackendPreference,
  type SelectBackendOptions,
  type TfjsRuntime,
} from './backend-selector.js';
export {
  MIN_TRAINING_GFLOPS,
  describeBackend,
  measureConvStep,
  type BackendDescription,
  type ConvProbeResult,
  type ConvProbeShape,
  type DescribeBackendOptions,
} from './backend-doctor.js';
export { registerTrainingGradients, unregisterTrainingGradients } from './training-gradients.js';
export {
  WASM_TRAINING_KERNEL_NAMES,
  registerWasmTrainingKernels,
  registeredWasmTrainingKernels,
  unregisterWasmTrainingKernels,
  type WasmKernelRegistration,
  type WasmTrainingKernelName,
} from './wasm-training-kernels.js';
