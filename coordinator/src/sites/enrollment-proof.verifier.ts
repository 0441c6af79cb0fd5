import { Inject, Injectable } from '@nestjs/common';
import { calculateJwkThumbprint, EmbeddedJWK, errors, jwtVerify, type JWK } from 'jose';
import { z } from 'zod';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import type { SitePublicJwk } from './site.entity.js';

/** Longest accepted proof lifetime (exp − iat), and how far in the future exp may lie. */
export const MAX_PROOF_LIFETIME_SECONDS = 300;
/** Tolerated clock difference between site and coordinator. */
export const PROOF_CLOCK_TOLERANCE_SECONDS = 30;

export class EnrollmentRefusedError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'EnrollmentRefusedError';
  }
}

export interface VerifiedEnrollmentProof {
  enrollmentToken: string;
  siteId: string;
  /** the site's public key, reduced to its RFC 7638 members */
  publicJwk: SitePublicJwk;
  /** RFC 7638 SHA-256 thumbprint of publicJwk (equal to the header's kid) */
  kid: string;
  iat: number;
  exp: number;
}

const ProofClaims = z.object({
  enrollmentToken: z.string().min(16).max(512),
  siteId: z.uuid(),
  iat: z.number().int(),
  exp: z.number().int(),
});

const Ed25519PublicJwk = z.object({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});

/**
 * Checks a site's enrolment proof: a compact JWS (EdDSA) signed by the site's new Ed25519 key, whose protected
 * header carries that public key as `jwk` and its RFC 7638 thumbprint as `kid`, with the payload
 * `{ enrollmentToken, siteId, aud, iat, exp }`: aud = this coordinator's audience, exp − iat ≤ 5 min.
 * The token itself (hash, site, expiry, single use) is checked by {@link SitesService.enroll}.
 */
@Injectable()
export class EnrollmentProofVerifier {
  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    private readonly clock: Clock,
  ) {}

  async verify(proof: string): Promise<VerifiedEnrollmentProof> {
    let payload: Record<string, unknown>;
    let header: { jwk?: JWK; kid?: string };
    try {
      ({ payload, protectedHeader: header } = await jwtVerify(proof, EmbeddedJWK, {
        algorithms: ['EdDSA', 'Ed25519'],
        audience: this.config.audience,
        currentDate: this.clock.now(),
        clockTolerance: PROOF_CLOCK_TOLERANCE_SECONDS,
        maxTokenAge: MAX_PROOF_LIFETIME_SECONDS,
        requiredClaims: ['aud', 'iat', 'exp'],
      }));
    } catch (error) {
      throw new EnrollmentRefusedError(describeJoseError(error));
    }
    const jwk = Ed25519PublicJwk.safeParse(header.jwk);
    if (!jwk.success) throw new EnrollmentRefusedError('proof key must be an Ed25519 public JWK');
    const publicJwk: SitePublicJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.data.x };
    const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
    if (header.kid !== kid) throw new EnrollmentRefusedError('proof kid is not the thumbprint of its jwk');

    const claims = ProofClaims.safeParse(payload);
    if (!claims.success)
      throw new EnrollmentRefusedError('proof payload lacks enrollmentToken, siteId, iat or exp');
    const { enrollmentToken, siteId, iat, exp } = claims.data;
    const now = this.clock.nowSeconds();
    if (exp - iat > MAX_PROOF_LIFETIME_SECONDS)
      throw new EnrollmentRefusedError('proof lifetime exceeds 5 minutes');
    if (exp > now + MAX_PROOF_LIFETIME_SECONDS + PROOF_CLOCK_TOLERANCE_SECONDS) {
      throw new EnrollmentRefusedError('proof expires too far in the future');
    }
    return { enrollmentToken, siteId, publicJwk, kid, iat, exp };
  }
}

function describeJoseError(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'proof expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') return 'proof audience is not this coordinator';
    return `proof claim ${error.claim} invalid: ${error.message}`;
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return 'proof signature does not verify with the embedded key';
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return 'proof must be signed with EdDSA (Ed25519)';
  if (error instanceof errors.JOSEError) return `invalid proof: ${error.message}`;
  return `invalid proof: ${(error as Error).message}`;
}
