// The one error type of site authentication, with a machine-readable code for logs, metrics and handshake replies.

export type AuthErrorCode =
  | 'missing_token'
  | 'malformed'
  | 'unknown_key'
  | 'revoked'
  | 'bad_signature'
  | 'expired'
  | 'lifetime_too_long'
  | 'wrong_audience'
  | 'subject_mismatch'
  | 'replayed';

export class AuthError extends Error {
  override readonly name = 'AuthError';

  constructor(
    readonly code: AuthErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isAuthError(err: unknown): err is AuthError {
  return err instanceof AuthError;
}
