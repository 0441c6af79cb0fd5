// Content-addressed blob storage: the interface and the on-disk implementation.
export * from './blob-store.js';
export * from './file-blob-store.js';
