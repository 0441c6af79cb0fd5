// The paper's segmenters (U-Net, Swin + UperNet-style decoder) and nnU-Net's loss.
export * from './unet.js';
export * from './swin.js';
export * from './swin-windows.js';
export * from './losses.js';
export * from './segmenters.js';
