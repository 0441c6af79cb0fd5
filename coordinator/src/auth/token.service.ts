import { Inject, Injectable } from '@nestjs/common';
import { errors, jwtVerify, SignJWT } from 'jose';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { CoordinatorKeyService } from '../keys/coordinator-key.service.js';
import { isRole, type Role } from '../users/role.js';

/** Explicit JWT type of user access tokens (RFC 8725 §3.11), so no other coordinator-signed JWT passes. */
export const USER_TOKEN_TYPE = 'fedsynth-user+jwt';

export interface UserTokenClaims {
  /** user id */
  sub: string;
  username: string;
  role: Role;
  iat: number;
  exp: number;
  jti: string;
}

export interface IssuedToken {
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  expiresAt: string;
}

export class InvalidTokenError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'InvalidTokenError';
  }
}

/**
 * Coordinator-signed user tokens: EdDSA JWTs with iss = aud = the coordinator audience, sub = user id, a role
 * claim and a lifetime of `userTokenTtlSeconds` (1 h by default).
 */
@Injectable()
export class TokenService {
  constructor(
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    private readonly keys: CoordinatorKeyService,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  async issue(user: { id: string; username: string; role: Role }): Promise<IssuedToken> {
    const iat = this.clock.nowSeconds();
    const exp = iat + this.config.userTokenTtlSeconds;
    const accessToken = await new SignJWT({ username: user.username, role: user.role })
      .setProtectedHeader({ alg: 'EdDSA', typ: USER_TOKEN_TYPE, kid: this.keys.kid })
      .setIssuer(this.config.audience)
      .setAudience(this.config.audience)
      .setSubject(user.id)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(this.random.uuid())
      .sign(this.keys.privateKey);
    return {
      accessToken,
      tokenType: 'Bearer',
      expiresIn: exp - iat,
      expiresAt: new Date(exp * 1000).toISOString(),
    };
  }

  /** The claims of a valid token; throws {@link InvalidTokenError} otherwise. */
  async verify(token: string): Promise<UserTokenClaims> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.keys.publicKey, {
        algorithms: ['EdDSA', 'Ed25519'],
        issuer: this.config.audience,
        audience: this.config.audience,
        typ: USER_TOKEN_TYPE,
        currentDate: this.clock.now(),
        clockTolerance: 5,
        requiredClaims: ['sub', 'iat', 'exp', 'jti'],
      }));
    } catch (error) {
      if (error instanceof errors.JWTExpired) throw new InvalidTokenError('token expired');
      if (error instanceof errors.JOSEError) throw new InvalidTokenError(`invalid token (${error.code})`);
      throw error;
    }
    const { sub, username, role, iat, exp, jti } = payload;
    if (typeof sub !== 'string' || typeof username !== 'string' || !isRole(role)) {
      throw new InvalidTokenError('invalid token (claims)');
    }
    return { sub, username, role, iat: iat as number, exp: exp as number, jti: jti as string };
  }
}
