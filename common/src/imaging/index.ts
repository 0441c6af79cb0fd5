export * from './slice-grid.js';
