// The error half of every ack: `{ ok: false, code, message }`. Handlers throw ProtocolError to produce one.

export type ErrorCode =
  /** the payload did not match the event's schema; nothing was stored */
  | 'bad_payload'
  /** `site:hello` from a different protocol version */
  | 'protocol_mismatch'
  /** an event before a successful `site:hello` */
  | 'not_ready'
  | 'unauthorized'
  | 'internal'
  | 'busy'
  | 'unknown_job'
  /** the job's lease expired or passed to another attempt: stop working on it */
  | 'lease_lost'
  | 'declined'
  | 'unknown_transfer'
  /** `blob:fetch` of a blob that is not an input of the job, or no longer stored */
  | 'unknown_blob'
  /** `transfer:begin` for an id that exists with another size, hash, chunk size or kind */
  | 'transfer_conflict'
  | 'too_large'
  | 'too_many_transfers'
  /** chunk index out of range or wrong length for its index */
  | 'bad_chunk'
  /** the chunk's bytes do not match its sha256 */
  | 'chunk_checksum'
  /** commit before every chunk arrived */
  | 'incomplete'
  /** the assembled bytes do not match the announced sha256; the transfer was discarded */
  | 'sha_mismatch'
  | 'aborted';

export interface ErrorReply {
  ok: false;
  code: ErrorCode | (string & {});
  message: string;
  /** true when the same request may succeed later (a busy receiver, a bad chunk that can be re-read) */
  retryable?: boolean;
}

export type OkReply<T extends object = object> = { ok: true } & T;
export type Reply<T extends object = object> = OkReply<T> | ErrorReply;

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
  }

  toReply(): ErrorReply {
    return {
      ok: false,
      code: this.code,
      message: this.message,
      ...(this.retryable ? { retryable: true } : {}),
    };
  }
}

export function errorReply(code: ErrorCode, message: string, retryable?: boolean): ErrorReply {
  return { ok: false, code, message, ...(retryable ? { retryable: true } : {}) };
}

export function isErrorReply(value: unknown): value is ErrorReply {
  return typeof value === 'object' && value !== null && (value as { ok?: unknown }).ok === false;
}
