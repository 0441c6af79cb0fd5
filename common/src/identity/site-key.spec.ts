import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CompactSign, compactVerify, importJWK } from 'jose';
import {
  SiteKeyFileError,
  generateSiteKeyPair,
  loadSiteKey,
  publicJwkThumbprint,
  saveSiteKey,
  siteKeyPath,
} from './site-key.js';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-key-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('thumbprint matches the RFC 8037 appendix A.3 example', async () => {
  const jwk = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' } as const;
  assert.equal(await publicJwkThumbprint(jwk), 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
  // extra members (kid, alg, d) do not change it
  assert.equal(
    await publicJwkThumbprint({ ...jwk, kid: 'x', alg: 'EdDSA' } as never),
    'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k',
  );
});

test('a generated key pair signs and its public JWK verifies; kid is the thumbprint', async () => {
  const key = await generateSiteKeyPair();
  assert.deepEqual(Object.keys(key.publicJwk).sort(), ['crv', 'kty', 'x']);
  assert.equal(key.kid, await publicJwkThumbprint(key.publicJwk));
  const jws = await new CompactSign(Buffer.from('hi'))
    .setProtectedHeader({ alg: 'EdDSA' })
    .sign(key.privateKey);
  await compactVerify(jws, await importJWK(key.publicJwk, 'EdDSA'));
  const other = await generateSiteKeyPair();
  assert.notEqual(other.kid, key.kid);
});

test('saveSiteKey writes mode 0600 and loadSiteKey reads the same key back', async (t) => {
  const dir = await tempDir(t);
  const key = await generateSiteKeyPair();
  const file = await saveSiteKey(path.join(dir, 'state'), key);
  assert.equal(file, siteKeyPath(path.join(dir, 'state')));
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const loaded = await loadSiteKey(path.join(dir, 'state'));
  assert.equal(loaded.kid, key.kid);
  assert.deepEqual(loaded.publicJwk, key.publicJwk);
  const jws = await new CompactSign(Buffer.from('x'))
    .setProtectedHeader({ alg: 'EdDSA' })
    .sign(loaded.privateKey);
  await compactVerify(jws, await importJWK(key.publicJwk, 'EdDSA'));
  // never replaced by accident
  await assert.rejects(saveSiteKey(path.join(dir, 'state'), await generateSiteKeyPair()), /already exists/);
  await saveSiteKey(path.join(dir, 'state'), await generateSiteKeyPair(), { overwrite: true });
  assert.notEqual((await loadSiteKey(path.join(dir, 'state'))).kid, key.kid);
});

test('loadSiteKey refuses a group/world-readable key with a clear message', async (t) => {
  const dir = await tempDir(t);
  const file = await saveSiteKey(dir, await generateSiteKeyPair());
  for (const mode of [0o644, 0o640, 0o604]) {
    await chmod(file, mode);
    await assert.rejects(loadSiteKey(dir), (err: unknown) => {
      assert.ok(err instanceof SiteKeyFileError);
      assert.equal(err.problem, 'insecure_permissions');
      assert.match(err.message, new RegExp(`mode 0${mode.toString(8)}`));
      assert.match(err.message, /chmod 600/);
      return true;
    });
  }
  await chmod(file, 0o400);
  await loadSiteKey(dir);
});

test('loadSiteKey: missing, not JSON, wrong key type, mismatched halves', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(
    loadSiteKey(dir),
    (err: unknown) => err instanceof SiteKeyFileError && err.problem === 'missing',
  );
  const file = siteKeyPath(dir);
  const write = async (text: string) => {
    await writeFile(file, text, { mode: 0o600 });
    await chmod(file, 0o600);
  };
  await write('not json');
  await assert.rejects(loadSiteKey(dir), /not valid JSON/);
  await write(JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'c' }));
  await assert.rejects(loadSiteKey(dir), /not an Ed25519 private JWK/);
  const a = await generateSiteKeyPair();
  const b = await generateSiteKeyPair();
  await write(JSON.stringify({ ...a.privateJwk, x: b.publicJwk.x }));
  // WebCrypto's import already checks x against d; the signing probe is the second line of defence
  await assert.rejects(loadSiteKey(dir), /could not be imported|public part does not match/);
  await write(JSON.stringify({ ...a.privateJwk, kid: b.kid }));
  await assert.rejects(loadSiteKey(dir), /kid does not match/);
  await write(JSON.stringify(a.privateJwk));
  assert.equal((await loadSiteKey(dir)).kid, a.kid);
  assert.match(await readFile(file, 'utf8'), /"d"/);
});
