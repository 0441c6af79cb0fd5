// @fedsynth/common: import a feature's barrel (`@fedsynth/common/brats/index`, ...) or this one for everything.
export * from './brats/index.js';
export * from './slices/index.js';
export * from './imaging/index.js';
export * from './phantom/index.js';
export * from './ml/weights/index.js';
export * from './ml/metrics/index.js';
export * from './ml/training/index.js';
