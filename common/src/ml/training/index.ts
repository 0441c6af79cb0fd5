// The training runtime: data-parallel training in worker threads (shared-memory gradient all-reduce), optimizers
// with checkpointable state, checkpoints and resume, progress and cancellation. Tasks register by kind; a task
// may run several optimizer phases per step (GANs) and keep an EMA of weights.
export * from './spec.js';
export * from './registry.js';
export {
  decodeTrainingState,
  encodeTrainingState,
  parameterLayout,
  type ParameterLayout,
  type TrainingState,
} from './phases.js';
export * from './optimizers.js';
export * from './checkpoint.js';
export * from './progress.js';
export * from './run.js';
export {
  chunkOf,
  exchangeBufferBytes,
  GradientExchange,
  PeerAbortError,
  SharedBarrier,
  type ReduceOutcome,
} from './allreduce.js';
export type { BackendSummary, TensorCounts, WorkerTiming } from './protocol.js';
