export * from './segmenter-jobs.js';
export * from './generator-jobs.js';
