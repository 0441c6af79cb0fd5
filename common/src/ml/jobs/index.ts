export * from './segmenter-jobs.js';
