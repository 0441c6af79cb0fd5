// Chunked, resumable, verified transfers over any ack-capable transport (a socket.io socket, either side).
export * from './ack-emitter.js';
export * from './chunk-source.js';
export * from './chunks.js';
export * from './progress.js';
export * from './receiver.js';
export * from './sender.js';
export * from './staging.js';
export * from './transfer-error.js';
