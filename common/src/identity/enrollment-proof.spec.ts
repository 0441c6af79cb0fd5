import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompactSign, EmbeddedJWK, compactVerify, decodeProtectedHeader } from 'jose';
import { AuthError } from './auth-error.js';
import { ENROLLMENT_PROOF_TYP, createEnrollmentProof, verifyEnrollmentProof } from './enrollment-proof.js';
import { generateSiteKeyPair } from './site-key.js';

const AUD = 'https://coordinator.example.org';

test('the proof verifies with jose compactVerify + EmbeddedJWK and carries jwk, kid and the claims', async () => {
  const key = await generateSiteKeyPair();
  const clock = { now: () => 1_700_000_000_000 };
  const proof = await createEnrollmentProof({
    privateKey: key.privateKey,
    publicJwk: key.publicJwk,
    enrollmentToken: 'one-time-token',
    siteId: 'site-alpha',
    audience: AUD,
    clock,
  });
  const header = decodeProtectedHeader(proof);
  assert.equal(header.alg, 'EdDSA');
  assert.equal(header.kid, key.kid);
  assert.deepEqual(header.jwk, key.publicJwk);
  const { payload } = await compactVerify(proof, EmbeddedJWK);
  assert.deepEqual(JSON.parse(Buffer.from(payload).toString()), {
    enrollmentToken: 'one-time-token',
    siteId: 'site-alpha',
    aud: AUD,
    iat: 1_700_000_000,
    exp: 1_700_000_300,
  });
  const v = await verifyEnrollmentProof(proof, { audience: AUD, clock });
  assert.equal(v.kid, key.kid);
  assert.equal(v.siteId, 'site-alpha');
  assert.equal(v.enrollmentToken, 'one-time-token');
  await assert.rejects(verifyEnrollmentProof(proof, { audience: 'other', clock }), {
    code: 'wrong_audience',
  });
  await assert.rejects(
    verifyEnrollmentProof(proof, { audience: AUD, clock: { now: () => 1_700_000_400_000 } }),
    {
      code: 'expired',
    },
  );
});

test('a proof whose embedded jwk is not the signer, or whose kid lies, is refused', async () => {
  const a = await generateSiteKeyPair();
  const b = await generateSiteKeyPair();
  const iat = Math.floor(Date.now() / 1000);
  const body = Buffer.from(
    JSON.stringify({ enrollmentToken: 't', siteId: 's', aud: AUD, iat, exp: iat + 300 }),
  );
  const wrongSigner = await new CompactSign(body)
    .setProtectedHeader({ alg: 'EdDSA', typ: ENROLLMENT_PROOF_TYP, jwk: a.publicJwk, kid: a.kid })
    .sign(b.privateKey);
  await assert.rejects(verifyEnrollmentProof(wrongSigner, { audience: AUD }), (e: unknown) => {
    return e instanceof AuthError && e.code === 'bad_signature';
  });
  const lyingKid = await new CompactSign(body)
    .setProtectedHeader({ alg: 'EdDSA', typ: ENROLLMENT_PROOF_TYP, jwk: a.publicJwk, kid: b.kid })
    .sign(a.privateKey);
  await assert.rejects(verifyEnrollmentProof(lyingKid, { audience: AUD }), { code: 'malformed' });
  const privateInHeader = await new CompactSign(body)
    .setProtectedHeader({ alg: 'EdDSA', typ: ENROLLMENT_PROOF_TYP, jwk: a.privateJwk, kid: a.kid })
    .sign(a.privateKey);
  await assert.rejects(verifyEnrollmentProof(privateInHeader, { audience: AUD }), { code: 'malformed' });
  await assert.rejects(verifyEnrollmentProof(undefined, { audience: AUD }), { code: 'missing_token' });
  const noTyp = await new CompactSign(body)
    .setProtectedHeader({ alg: 'EdDSA', jwk: a.publicJwk, kid: a.kid })
    .sign(a.privateKey);
  await assert.rejects(verifyEnrollmentProof(noTyp, { audience: AUD }), { code: 'malformed' });
});
