// Test-side signer of enrolment proofs, written from the protocol text (compact JWS, EdDSA, protected header
// { alg, jwk, kid = RFC 7638 thumbprint }, payload { enrollmentToken, siteId, aud, iat, exp }), independent of
// common/src/identity so the coordinator's verifier is checked against the spec rather than against itself.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, type JWK, SignJWT } from 'jose';

export interface TestSiteKey {
  privateKey: KeyObject;
  publicJwk: JWK;
  kid: string;
}

export async function newSiteKey(): Promise<TestSiteKey> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, kid: await calculateJwkThumbprint(publicJwk, 'sha256') };
}

export interface ProofOptions {
  key: TestSiteKey;
  enrollmentToken: string;
  siteId: string;
  audience: string;
  /** seconds; default now */
  iat: number;
  /** default iat + 300 */
  exp?: number;
  /** sign with this key instead of `key` (the header still embeds `key`) */
  signWith?: KeyObject;
  /** header kid instead of the thumbprint */
  kid?: string;
  /** header jwk instead of key.publicJwk */
  jwk?: JWK;
}

export function signEnrollmentProof(o: ProofOptions): Promise<string> {
  return new SignJWT({ enrollmentToken: o.enrollmentToken, siteId: o.siteId })
    .setProtectedHeader({ alg: 'EdDSA', jwk: o.jwk ?? o.key.publicJwk, kid: o.kid ?? o.key.kid })
    .setAudience(o.audience)
    .setIssuedAt(o.iat)
    .setExpirationTime(o.exp ?? o.iat + 300)
    .sign(o.signWith ?? o.key.privateKey);
}
