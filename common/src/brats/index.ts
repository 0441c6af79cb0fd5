export * from './modalities.js';
export * from './label-schemes.js';
export * from './case-error.js';
export * from './case-discovery.js';
export * from './case-loader.js';
export * from './case-inspection.js';
