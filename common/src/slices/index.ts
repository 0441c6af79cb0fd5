export * from './presets.js';
export * from './subject-split.js';
export * from './slicer.js';
export * from './slice-store.js';
export * from './slice-pipeline.js';
export * from './slice-nifti-export.js';
export * from './shared-brain-mask.js';
