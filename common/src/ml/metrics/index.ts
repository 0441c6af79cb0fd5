// Segmentation metrics as BraTS reports them: Dice and HD95 per label and region, with an exact distance transform.
export * from './distance-transform.js';
export * from './surface-distance.js';
export * from './segmentation-metrics.js';
