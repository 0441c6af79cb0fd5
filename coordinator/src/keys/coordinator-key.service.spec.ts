import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveCoordinatorConfig } from '../config/coordinator-config.js';
import { COORDINATOR_KEY_FILE, CoordinatorKeyService } from './coordinator-key.service.js';

describe('coordinator signing key', () => {
  let dir: string;
  const service = () =>
    new CoordinatorKeyService(resolveCoordinatorConfig({ dataDir: path.join(dir, 'data') }));

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-keys-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('is created on first start with mode 0600 in a 0700 directory, then reused', async () => {
    const first = service();
    await first.load();
    const file = path.join(dir, 'data', COORDINATOR_KEY_FILE);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(path.join(dir, 'data'))).mode & 0o777, 0o700);
    assert.equal(first.privateKey.asymmetricKeyType, 'ed25519');
    assert.match(first.kid, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(first.publicJwk.kty, 'OKP');
    assert.equal(first.publicJwk.d, undefined, 'the public JWK has no private part');

    const second = service();
    await second.load();
    assert.equal(second.kid, first.kid);
  });

  it('refuses a key file that other users can read', async () => {
    const file = path.join(dir, 'data', COORDINATOR_KEY_FILE);
    await chmod(file, 0o644);
    try {
      await assert.rejects(service().load(), /accessible by other users \(mode 644\).*chmod 600/);
    } finally {
      await chmod(file, 0o600);
    }
  });
});
