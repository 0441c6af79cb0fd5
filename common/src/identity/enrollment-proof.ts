// Enrolment proof: the new site key signs the one-time enrolment token, so the coordinator learns the public key and
// that whoever holds the token also holds the private key. A compact JWS (EdDSA) with the public JWK and its
// thumbprint in the protected header; the coordinator checks it with jose `compactVerify` + `EmbeddedJWK`.
import { CompactSign, EmbeddedJWK, compactVerify, decodeProtectedHeader } from 'jose';
import type { CryptoKey } from 'jose';
import * as z from 'zod';
import { AuthError } from './auth-error.js';
import { type Clock, epochSeconds, systemClock } from './clock.js';
import {
  type PublicSiteJwk,
  SITE_KEY_ALG,
  publicJwkThumbprint,
  publicSiteJwkSchema,
  toPublicSiteJwk,
} from './site-key.js';

export const ENROLLMENT_PROOF_TTL_SECONDS = 300;
export const ENROLLMENT_PROOF_TYP = 'fedsynth-enrol+jws';

export interface EnrollmentProofInput {
  privateKey: CryptoKey;
  publicJwk: PublicSiteJwk;
  enrollmentToken: string;
  siteId: string;
  /** the coordinator's identifier (its public URL or configured audience) */
  audience: string;
  clock?: Clock;
}

export async function createEnrollmentProof(input: EnrollmentProofInput): Promise<string> {
  const publicJwk = toPublicSiteJwk(input.publicJwk);
  const kid = await publicJwkThumbprint(publicJwk);
  const iat = epochSeconds(input.clock ?? systemClock);
  const payload = {
    enrollmentToken: input.enrollmentToken,
    siteId: input.siteId,
    aud: input.audience,
    iat,
    exp: iat + ENROLLMENT_PROOF_TTL_SECONDS,
  };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: SITE_KEY_ALG, typ: ENROLLMENT_PROOF_TYP, jwk: publicJwk, kid })
    .sign(input.privateKey);
}

const proofPayloadSchema = z.object({
  enrollmentToken: z.string().min(1).max(512),
  siteId: z.string().min(1).max(128),
  aud: z.string(),
  iat: z.number().int(),
  exp: z.number().int(),
});

export interface VerifiedEnrollmentProof {
  kid: string;
  publicJwk: PublicSiteJwk;
  enrollmentToken: string;
  siteId: string;
  iat: number;
  exp: number;
}

/**
 * The coordinator's side: signature by the embedded key, kid = its thumbprint, audience, freshness. Does NOT consume
 * the enrolment token: the caller looks its hash up, checks expiry and single use, and binds the site id.
 */
export async function verifyEnrollmentProof(
  proof: string | undefined,
  options: { audience: string; clock?: Clock; clockToleranceSeconds?: number },
): Promise<VerifiedEnrollmentProof> {
  if (typeof proof !== 'string' || proof.length === 0)
    throw new AuthError('missing_token', 'no enrolment proof');
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(proof);
  } catch {
    throw new AuthError('malformed', 'enrolment proof is not a compact JWS');
  }
  const jwk = publicSiteJwkSchema.safeParse(header.jwk);
  if (
    header.alg !== SITE_KEY_ALG ||
    header.typ !== ENROLLMENT_PROOF_TYP ||
    !jwk.success ||
    typeof header.kid !== 'string'
  ) {
    throw new AuthError(
      'malformed',
      `enrolment proof header must carry alg EdDSA, typ ${ENROLLMENT_PROOF_TYP}, an Ed25519 public jwk and kid`,
    );
  }
  const publicJwk = toPublicSiteJwk(jwk.data);
  const kid = await publicJwkThumbprint(publicJwk);
  if (header.kid !== kid)
    throw new AuthError('malformed', 'enrolment proof kid is not the thumbprint of its jwk');
  let payloadBytes: Uint8Array;
  try {
    ({ payload: payloadBytes } = await compactVerify(proof, EmbeddedJWK, { algorithms: [SITE_KEY_ALG] }));
  } catch {
    throw new AuthError('bad_signature', 'enrolment proof signature does not verify with its embedded key');
  }
  let claims: z.infer<typeof proofPayloadSchema>;
  try {
    claims = proofPayloadSchema.parse(JSON.parse(new TextDecoder().decode(payloadBytes)));
  } catch {
    throw new AuthError('malformed', 'enrolment proof payload is not the expected JSON');
  }
  const now = epochSeconds(options.clock ?? systemClock);
  const skew = options.clockToleranceSeconds ?? 30;
  if (
    claims.exp - claims.iat > ENROLLMENT_PROOF_TTL_SECONDS ||
    claims.exp - now > ENROLLMENT_PROOF_TTL_SECONDS + skew
  ) {
    throw new AuthError(
      'lifetime_too_long',
      `enrolment proof may live at most ${ENROLLMENT_PROOF_TTL_SECONDS} s`,
    );
  }
  if (now >= claims.exp + skew) throw new AuthError('expired', 'enrolment proof has expired');
  if (claims.aud !== options.audience)
    throw new AuthError('wrong_audience', 'enrolment proof is for another audience');
  return {
    kid,
    publicJwk,
    enrollmentToken: claims.enrollmentToken,
    siteId: claims.siteId,
    iat: claims.iat,
    exp: claims.exp,
  };
}
