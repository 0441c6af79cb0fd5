// Errors a transfer ends with, on the sending side. `retryable` tells a resuming caller whether another attempt
// (after reconnecting) can succeed; `peerCode` is the receiver's error code when it refused something.

export type TransferErrorCode =
  /** no ack within the timeout, after the retries */
  | 'timeout'
  /** the connection dropped; resume on the next one */
  | 'disconnected'
  /** the receiver answered with an error (see peerCode) */
  | 'rejected'
  /** the receiver's ack did not match its schema */
  | 'bad_reply'
  /** the receiver's commit found different bytes than announced; it discarded the transfer */
  | 'sha_mismatch'
  /** the receiver holds this transfer id with another size, hash or chunk size */
  | 'conflict'
  /** the source file changed while it was being sent */
  | 'source_changed'
  | 'aborted';

export class TransferError extends Error {
  override readonly name = 'TransferError';

  constructor(
    readonly code: TransferErrorCode,
    message: string,
    readonly retryable: boolean,
    readonly peerCode?: string,
  ) {
    super(message);
  }
}
