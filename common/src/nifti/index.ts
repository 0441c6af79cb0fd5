export * from './nifti-error.js';
export * from './nifti-reader.js';
export * from './nifti-types.js';
export * from './nifti-writer.js';
