import { scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { RandomSource } from '../core/random-source.js';

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCallback(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export interface ScryptParameters {
  /** log2 of the CPU/memory cost N */
  logN: number;
  r: number;
  p: number;
}

/** OWASP's scrypt minimum is N=2^17, r=8, p=1 for interactive logins; 2^15 keeps a login near 100 ms here. */
export const DEFAULT_SCRYPT: ScryptParameters = { logN: 15, r: 8, p: 1 };
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;

/**
 * Password hashing with node:crypto scrypt and a random salt per password, stored self-describing as
 * `scrypt$<logN>$<r>$<p>$<salt>$<hash>` (base64url) so the cost can rise later without breaking old hashes.
 * Runs on libuv's thread pool, not on the event loop.
 */
@Injectable()
export class PasswordHasher {
  private readonly params: ScryptParameters = DEFAULT_SCRYPT;

  constructor(private readonly random: RandomSource) {}

  async hash(password: string): Promise<string> {
    const { logN, r, p } = this.params;
    const salt = this.random.bytes(SALT_LENGTH);
    const key = await scrypt(password, salt, KEY_LENGTH, this.options(this.params));
    return ['scrypt', logN, r, p, salt.toString('base64url'), key.toString('base64url')].join('$');
  }

  /** True when `password` matches `encoded`; false for a wrong password or a malformed hash. */
  async verify(password: string, encoded: string): Promise<boolean> {
    const parts = encoded.split('$');
    if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
    const [logN, r, p] = parts.slice(1, 4).map(Number);
    if (![logN, r, p].every((n) => Number.isInteger(n) && n > 0) || logN > 22 || r > 32 || p > 16)
      return false;
    const salt = Buffer.from(parts[4], 'base64url');
    const expected = Buffer.from(parts[5], 'base64url');
    if (expected.length < 16) return false;
    const actual = await scrypt(password, salt, expected.length, this.options({ logN, r, p }));
    return timingSafeEqual(actual, expected);
  }

  /**
   * Spends the time of one verification on nothing, so that "no such user" answers as slowly as "wrong password".
   */
  async burn(password: string): Promise<void> {
    await scrypt(password, Buffer.alloc(SALT_LENGTH), KEY_LENGTH, this.options(this.params));
  }

  private options({ logN, r, p }: ScryptParameters): ScryptOptions {
    const N = 2 ** logN;
    return { N, r, p, maxmem: 256 * N * r + 1024 * 1024 };
  }
}
