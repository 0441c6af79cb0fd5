export * from './release-builder.js';
export * from './release-card.js';
export * from './release-manifest.js';
export * from './release-tar.js';
export * from './run-release-worker.js';
