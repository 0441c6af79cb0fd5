import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { AuthError, type AuthErrorCode } from './auth-error.js';
import { createEnrollmentProof } from './enrollment-proof.js';
import type { Clock } from './clock.js';
import { InMemoryReplayCache } from './replay-cache.js';
import {
  type ResolvedSiteKey,
  type VerifySiteAssertionOptions,
  createSiteAssertion,
  verifySiteAssertion,
} from './site-assertion.js';
import { type SiteKeyPair, generateSiteKeyPair } from './site-key.js';

const AUD = 'https://coordinator.example.org';
const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

interface World {
  clock: Clock & { t: number };
  alpha: SiteKeyPair;
  beta: SiteKeyPair;
  registry: Map<string, ResolvedSiteKey>;
  options: VerifySiteAssertionOptions;
}

async function world(): Promise<World> {
  const clock = {
    t: T0,
    now() {
      return this.t;
    },
  };
  const alpha = await generateSiteKeyPair();
  const beta = await generateSiteKeyPair();
  const registry = new Map<string, ResolvedSiteKey>([
    [alpha.kid, { siteId: 'site-alpha', publicJwk: alpha.publicJwk, status: 'active' }],
    [beta.kid, { siteId: 'site-beta', publicJwk: beta.publicJwk, status: 'active' }],
  ]);
  const options: VerifySiteAssertionOptions = {
    audience: AUD,
    resolveKey: async (kid) => registry.get(kid),
    replayCache: new InMemoryReplayCache({ clock }),
    clock,
  };
  return { clock, alpha, beta, registry, options };
}

function assertion(w: World, over: Partial<Parameters<typeof createSiteAssertion>[0]> = {}): Promise<string> {
  return createSiteAssertion({
    privateKey: w.alpha.privateKey,
    kid: w.alpha.kid,
    siteId: 'site-alpha',
    audience: AUD,
    clock: w.clock,
    ...over,
  });
}

/** A token with hand-picked claims, signed by alpha's key (for the cases createSiteAssertion refuses to make). */
function craft(
  w: World,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: w.alpha.kid, typ: 'fedsynth-site+jwt', ...header })
    .sign(w.alpha.privateKey);
}

function baseClaims(w: World): Record<string, unknown> {
  const iat = Math.floor(w.clock.now() / 1000);
  return { iss: 'site-alpha', sub: 'site-alpha', aud: AUD, iat, exp: iat + 120, jti: crypto.randomUUID() };
}

async function rejectsWith(promise: Promise<unknown>, code: AuthErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AuthError, `expected AuthError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

test('a fresh assertion verifies to its site, jti and exp', async () => {
  const w = await world();
  const token = await assertion(w);
  const v = await verifySiteAssertion(token, w.options);
  assert.equal(v.siteId, 'site-alpha');
  assert.equal(v.kid, w.alpha.kid);
  assert.equal(v.exp, T0 / 1000 + 120);
  assert.match(v.jti, /^[0-9a-f-]{36}$/);
  // each assertion has its own jti
  assert.notEqual((await verifySiteAssertion(await assertion(w), w.options)).jti, v.jti);
});

test('createSiteAssertion refuses a lifetime above 300 s', async () => {
  const w = await world();
  await assert.rejects(assertion(w, { ttlSeconds: 301 }), RangeError);
  await assert.rejects(assertion(w, { ttlSeconds: 0 }), RangeError);
  await verifySiteAssertion(await assertion(w, { ttlSeconds: 300 }), w.options);
});

test('missing_token', async () => {
  const w = await world();
  await rejectsWith(verifySiteAssertion(undefined, w.options), 'missing_token');
  await rejectsWith(verifySiteAssertion('', w.options), 'missing_token');
  await rejectsWith(verifySiteAssertion(null, w.options), 'missing_token');
});

test('malformed: not a JWT, bad header, wrong alg, no kid, bad claims', async () => {
  const w = await world();
  await rejectsWith(verifySiteAssertion('abc', w.options), 'malformed');
  await rejectsWith(verifySiteAssertion('!!!.e30.sig', w.options), 'malformed');
  const hs = await new SignJWT(baseClaims(w))
    .setProtectedHeader({ alg: 'HS256', kid: w.alpha.kid })
    .sign(new Uint8Array(32));
  await rejectsWith(verifySiteAssertion(hs, w.options), 'malformed');
  const noKid = await new SignJWT(baseClaims(w))
    .setProtectedHeader({ alg: 'EdDSA' })
    .sign(w.alpha.privateKey);
  await rejectsWith(verifySiteAssertion(noKid, w.options), 'malformed');
  const { jti: _jti, ...noJti } = baseClaims(w);
  await rejectsWith(verifySiteAssertion(await craft(w, noJti), w.options), 'malformed');
  // a token of another type signed by the same key: no typ, or an enrolment proof replayed as an assertion
  await rejectsWith(
    verifySiteAssertion(await craft(w, baseClaims(w), { typ: undefined }), w.options),
    'malformed',
  );
  const proof = await createEnrollmentProof({
    privateKey: w.alpha.privateKey,
    publicJwk: w.alpha.publicJwk,
    enrollmentToken: 't',
    siteId: 'site-alpha',
    audience: AUD,
    clock: w.clock,
  });
  await rejectsWith(verifySiteAssertion(proof, w.options), 'malformed');
});

test('unknown_key: a kid nobody registered', async () => {
  const w = await world();
  const stranger = await generateSiteKeyPair();
  const token = await assertion(w, { privateKey: stranger.privateKey, kid: stranger.kid });
  await rejectsWith(verifySiteAssertion(token, w.options), 'unknown_key');
});

test('revoked: takes effect at the next handshake', async () => {
  const w = await world();
  await verifySiteAssertion(await assertion(w), w.options);
  w.registry.get(w.alpha.kid)!.status = 'revoked';
  await rejectsWith(verifySiteAssertion(await assertion(w), w.options), 'revoked');
  w.registry.get(w.alpha.kid)!.status = 'suspended';
  await rejectsWith(verifySiteAssertion(await assertion(w), w.options), 'revoked');
});

test('bad_signature: forged with another key under alpha’s kid, and a tampered payload', async () => {
  const w = await world();
  const forged = await assertion(w, { privateKey: w.beta.privateKey, kid: w.alpha.kid });
  await rejectsWith(verifySiteAssertion(forged, w.options), 'bad_signature');
  const [h, , s] = (await assertion(w)).split('.');
  const payload = Buffer.from(JSON.stringify({ ...baseClaims(w), sub: 'site-alpha' })).toString('base64url');
  await rejectsWith(verifySiteAssertion(`${h}.${payload}.${s}`, w.options), 'bad_signature');
});

test('expired, with 30 s of clock tolerance', async () => {
  const w = await world();
  const token = await assertion(w, { ttlSeconds: 60 });
  w.clock.t = T0 + 60_000 + 29_000;
  await verifySiteAssertion(token, w.options);
  const token2 = await assertion(w, { ttlSeconds: 60, clock: { now: () => T0 } });
  w.clock.t = T0 + 60_000 + 30_000;
  await rejectsWith(verifySiteAssertion(token2, w.options), 'expired');
});

test('lifetime_too_long: exp - iat > 300, or dated in the future to outlive the bound', async () => {
  const w = await world();
  const c = baseClaims(w);
  await rejectsWith(
    verifySiteAssertion(await craft(w, { ...c, exp: (c.iat as number) + 301 }), w.options),
    'lifetime_too_long',
  );
  const future = (c.iat as number) + 3600;
  await rejectsWith(
    verifySiteAssertion(await craft(w, { ...c, iat: future, exp: future + 300 }), w.options),
    'lifetime_too_long',
  );
});

test('wrong_audience', async () => {
  const w = await world();
  await rejectsWith(
    verifySiteAssertion(await assertion(w, { audience: 'https://evil.example' }), w.options),
    'wrong_audience',
  );
  const multi = await craft(w, { ...baseClaims(w), aud: ['x', AUD] });
  await verifySiteAssertion(multi, w.options);
});

test('subject_mismatch: another site’s key, and iss ≠ sub', async () => {
  const w = await world();
  // beta signs with its own, valid key but claims to be alpha
  const asAlpha = await createSiteAssertion({
    privateKey: w.beta.privateKey,
    kid: w.beta.kid,
    siteId: 'site-alpha',
    audience: AUD,
    clock: w.clock,
  });
  await rejectsWith(verifySiteAssertion(asAlpha, w.options), 'subject_mismatch');
  await rejectsWith(
    verifySiteAssertion(await craft(w, { ...baseClaims(w), iss: 'site-beta' }), w.options),
    'subject_mismatch',
  );
  await rejectsWith(
    verifySiteAssertion(await craft(w, { ...baseClaims(w), sub: 'site-beta' }), w.options),
    'subject_mismatch',
  );
});

test('replayed: the same token twice; a rejected token does not burn its jti', async () => {
  const w = await world();
  const token = await assertion(w);
  await verifySiteAssertion(token, w.options);
  await rejectsWith(verifySiteAssertion(token, w.options), 'replayed');
  // still refused later in its lifetime; once past exp + tolerance it is refused as expired
  w.clock.t = T0 + 100_000;
  await rejectsWith(verifySiteAssertion(token, w.options), 'replayed');
  w.clock.t = T0 + 200_000;
  await rejectsWith(verifySiteAssertion(token, w.options), 'expired');

  const w2 = await world();
  const claims = baseClaims(w2);
  const wrongAud = await craft(w2, { ...claims, aud: 'other' });
  await rejectsWith(verifySiteAssertion(wrongAud, w2.options), 'wrong_audience');
  await verifySiteAssertion(await craft(w2, claims), w2.options);
});
