// Model weights: the fedsynth-weights blob format, tf.Variable conversion and FedAvg.
export * from './format.js';
export * from './variables.js';
export * from './fedavg.js';
