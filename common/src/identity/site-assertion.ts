// Site assertions: a short-lived JWT the site signs for every socket handshake (iss = sub = site id, aud =
// coordinator, exp - iat <= 300 s, unique jti). The coordinator resolves the key by kid, checks its status (so a
// revocation takes effect at the next handshake), the signature, the claims, and the jti against replays.
import { randomUUID } from 'node:crypto';
import { SignJWT, compactVerify, decodeProtectedHeader, importJWK } from 'jose';
import type { CryptoKey } from 'jose';
import * as z from 'zod';
import { AuthError } from './auth-error.js';
import { type Clock, epochSeconds, systemClock } from './clock.js';
import type { ReplayCache } from './replay-cache.js';
import { type PublicSiteJwk, SITE_KEY_ALG } from './site-key.js';

export const MAX_ASSERTION_LIFETIME_SECONDS = 300;
export const DEFAULT_ASSERTION_TTL_SECONDS = 120;
export const SITE_ASSERTION_TYP = 'fedsynth-site+jwt';

export interface SiteAssertionInput {
  privateKey: CryptoKey;
  kid: string;
  siteId: string;
  audience: string;
  /** at most 300 */
  ttlSeconds?: number;
  clock?: Clock;
  /** jti source; crypto.randomUUID by default */
  newId?: () => string;
}

export async function createSiteAssertion(input: SiteAssertionInput): Promise<string> {
  const ttl = input.ttlSeconds ?? DEFAULT_ASSERTION_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl <= 0 || ttl > MAX_ASSERTION_LIFETIME_SECONDS) {
    throw new RangeError(`ttlSeconds must be an integer in 1..${MAX_ASSERTION_LIFETIME_SECONDS}, got ${ttl}`);
  }
  const iat = epochSeconds(input.clock ?? systemClock);
  return new SignJWT({})
    .setProtectedHeader({ alg: SITE_KEY_ALG, kid: input.kid, typ: SITE_ASSERTION_TYP })
    .setIssuer(input.siteId)
    .setSubject(input.siteId)
    .setAudience(input.audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttl)
    .setJti((input.newId ?? randomUUID)())
    .sign(input.privateKey);
}

export type SiteKeyStatus = 'active' | 'revoked' | (string & {});

export interface ResolvedSiteKey {
  siteId: string;
  publicJwk: PublicSiteJwk;
  /** anything but 'active' is refused as revoked */
  status: SiteKeyStatus;
}

export interface VerifySiteAssertionOptions {
  audience: string;
  resolveKey: (kid: string) => Promise<ResolvedSiteKey | undefined>;
  replayCache: ReplayCache;
  clock?: Clock;
  /** allowed difference between the site's clock and ours, seconds (default 30) */
  clockToleranceSeconds?: number;
}

export interface VerifiedSiteAssertion {
  siteId: string;
  kid: string;
  jti: string;
  /** epoch seconds */
  exp: number;
}

const claimsSchema = z.object({
  iss: z.string().min(1).max(128),
  sub: z.string().min(1).max(128),
  aud: z.union([z.string(), z.array(z.string()).max(8)]),
  iat: z.number().int(),
  exp: z.number().int(),
  jti: z.string().min(8).max(128),
});

/**
 * Checks, in order: present, well-formed (alg EdDSA, kid), known key, not revoked, signature, lifetime (exp - iat and
 * exp - now both within 300 s, so a token dated in the future cannot outlive the bound), not expired, audience,
 * iss = sub = the key's site, and finally the jti (so a rejected token never consumes one). Throws AuthError.
 */
export async function verifySiteAssertion(
  token: string | undefined | null,
  options: VerifySiteAssertionOptions,
): Promise<VerifiedSiteAssertion> {
  if (typeof token !== 'string' || token.length === 0) {
    throw new AuthError('missing_token', 'no site assertion in the handshake');
  }
  if (token.length > 4096 || token.split('.').length !== 3) {
    throw new AuthError('malformed', 'site assertion is not a compact JWT');
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new AuthError('malformed', 'site assertion header is not valid base64url JSON');
  }
  if (header.alg !== SITE_KEY_ALG) {
    throw new AuthError('malformed', 'site assertion must be signed with EdDSA');
  }
  if (header.typ !== SITE_ASSERTION_TYP) {
    throw new AuthError(
      'malformed',
      `site assertion must have typ ${SITE_ASSERTION_TYP} (not an enrolment proof)`,
    );
  }
  if (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 128) {
    throw new AuthError('malformed', 'site assertion header has no kid');
  }
  if (header.crit !== undefined) {
    throw new AuthError('malformed', 'site assertion must not carry crit headers');
  }

  const key = await options.resolveKey(header.kid);
  if (!key) throw new AuthError('unknown_key', `no site key with kid ${header.kid}`);
  if (key.status !== 'active') {
    throw new AuthError('revoked', `site key ${header.kid} of site ${key.siteId} is ${key.status}`);
  }

  let payloadBytes: Uint8Array;
  try {
    const publicKey = await importJWK(
      { kty: key.publicJwk.kty, crv: key.publicJwk.crv, x: key.publicJwk.x },
      SITE_KEY_ALG,
    );
    ({ payload: payloadBytes } = await compactVerify(token, publicKey, { algorithms: [SITE_KEY_ALG] }));
  } catch {
    throw new AuthError('bad_signature', `site assertion signature does not verify with key ${header.kid}`);
  }
  let claims: z.infer<typeof claimsSchema>;
  try {
    claims = claimsSchema.parse(JSON.parse(new TextDecoder().decode(payloadBytes)));
  } catch {
    throw new AuthError(
      'malformed',
      'site assertion claims are missing or of the wrong type (iss, sub, aud, iat, exp, jti)',
    );
  }

  const now = epochSeconds(options.clock ?? systemClock);
  const skew = options.clockToleranceSeconds ?? 30;
  const max = MAX_ASSERTION_LIFETIME_SECONDS;
  if (claims.exp - claims.iat > max || claims.exp - now > max + skew) {
    throw new AuthError('lifetime_too_long', `site assertion lives longer than ${max} s`);
  }
  if (now >= claims.exp + skew) throw new AuthError('expired', 'site assertion has expired');
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audiences.includes(options.audience)) {
    throw new AuthError('wrong_audience', `site assertion is not for ${options.audience}`);
  }
  if (claims.iss !== claims.sub || claims.sub !== key.siteId) {
    throw new AuthError(
      'subject_mismatch',
      `site assertion iss/sub must both be ${key.siteId}, the key's site`,
    );
  }
  const fresh = await options.replayCache.remember(`${key.siteId}\u0000${claims.jti}`, claims.exp + skew);
  if (!fresh) throw new AuthError('replayed', `site assertion ${claims.jti} was already used`);
  return { siteId: key.siteId, kid: header.kid, jti: claims.jti, exp: claims.exp };
}
