// A small functional layer kit: seeded named variables (ParamFactory) and pure NHWC ops, shared by the
// segmenters and the generators.
export * from './params.js';
export * from './ops.js';
