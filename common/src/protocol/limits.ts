// Size limits shared by both ends of the socket. socket.io sends a Buffer as a separate binary frame, so a chunk
// message costs its bytes plus a small JSON envelope; over HTTP long-polling binary is base64 (+33%).

/** Largest chunk a receiver accepts (1 MiB). */
export const MAX_CHUNK_BYTES = 1024 * 1024;
/** Default chunk: 1 MiB minus 64 KiB of headroom, which is also below 1 MB (10^6) for the envelope. */
export const DEFAULT_CHUNK_BYTES = MAX_CHUNK_BYTES - 64 * 1024;
/** Smallest chunk size a transfer may declare (the last chunk of a transfer may be shorter). */
export const MIN_CHUNK_BYTES = 4 * 1024;
/** Largest transfer a peer may announce (1 TiB); receivers set their own, lower limits. */
export const MAX_TRANSFER_BYTES = 2 ** 40;
/**
 * The `maxHttpBufferSize` both servers should use: one chunk as base64 over long-polling (1.4 MB) fits, anything
 * much larger is refused by engine.io before it is buffered.
 */
export const RECOMMENDED_MAX_HTTP_BUFFER_SIZE = 2_000_000;
