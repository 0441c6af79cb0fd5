export * from './vectors.js';
export * from './coarse-search.js';
export * from './products.js';
export * from './audit.js';
export * from './run-in-worker.js';
export * from './local-record.js';
export * from './review-page.js';
export * from './audit-fixtures.js';
