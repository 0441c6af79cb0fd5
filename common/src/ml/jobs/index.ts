export * from './segmenter-jobs.js';
export * from './generator-jobs.js';
export * from './training-job.js';
export * from './federated-jobs.js';
