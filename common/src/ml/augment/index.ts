// Seeded, label-safe augmentation of segmentation batches.
export * from './augment.js';
