import { randomBytes, randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';

/** Randomness for identifiers and secrets (ids, salts, enrolment tokens), from node:crypto's CSPRNG. */
@Injectable()
export class RandomSource {
  uuid(): string {
    return randomUUID();
  }

  bytes(length: number): Buffer {
    return randomBytes(length);
  }

  /** A URL-safe secret of `bytes` random bytes (base64url, no padding). */
  secret(bytes = 32): string {
    return randomBytes(bytes).toString('base64url');
  }
}
