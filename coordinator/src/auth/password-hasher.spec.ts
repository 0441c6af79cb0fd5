import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RandomSource } from '../core/random-source.js';
import { PasswordHasher } from './password-hasher.js';

describe('password hashing (scrypt)', () => {
  const hasher = new PasswordHasher(new RandomSource());

  it('verifies the right password and refuses a wrong one', async () => {
    const encoded = await hasher.hash('correct horse battery staple');
    assert.match(encoded, /^scrypt\$15\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    assert.equal(await hasher.verify('correct horse battery staple', encoded), true);
    assert.equal(await hasher.verify('correct horse battery stapler', encoded), false);
    assert.equal(await hasher.verify('', encoded), false);
  });

  it('salts every hash', async () => {
    assert.notEqual(await hasher.hash('same password'), await hasher.hash('same password'));
  });

  it('treats malformed or absurd hashes as a mismatch', async () => {
    for (const bad of [
      '',
      'plain',
      'bcrypt$1$2$3$4$5',
      'scrypt$40$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      'scrypt$15$8$1$AAAA$AA',
    ]) {
      assert.equal(await hasher.verify('x', bad), false, bad);
    }
  });

  it('still verifies hashes made with other cost parameters', async () => {
    const cheap = 'scrypt$10$8$1$' + Buffer.alloc(16, 1).toString('base64url') + '$';
    const { scryptSync } = await import('node:crypto');
    const key = scryptSync('pw-123456789012', Buffer.alloc(16, 1), 32, { N: 1024, r: 8, p: 1 });
    assert.equal(await hasher.verify('pw-123456789012', cheap + key.toString('base64url')), true);
  });
});
