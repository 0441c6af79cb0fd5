import { createHash } from 'node:crypto';
import {
  BadRequestException,
  ConflictException,
  Inject,
  Injectable,
  Logger,
  NotFoundException,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { IsNull, MoreThan, type Repository } from 'typeorm';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { TransactionRunner } from '../database/transaction-runner.js';
import { isUniqueViolation } from '../database/unique-violation.js';
import { EnrollmentToken } from './enrollment-token.entity.js';
import { EnrollmentProofVerifier, EnrollmentRefusedError } from './enrollment-proof.verifier.js';
import { SiteEvents } from './site-events.js';
import { Site } from './site.entity.js';
import { SiteName } from './sites.schemas.js';

/** Enrolment tokens start with this, so secret scanners and humans recognise them. */
export const ENROLLMENT_TOKEN_PREFIX = 'fse_';

export interface MintedEnrollment {
  site: Site;
  /** the one-time token; only its hash is stored, so this is the only time it is shown */
  enrollmentToken: string;
  expiresAt: Date;
}

export function hashEnrollmentToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * Sites and their enrolment: an admin creates a pending site and gets a one-time token; the site proves
 * possession of a new Ed25519 key together with that token; the key is registered and the site becomes active.
 * Revocation is immediate (an event tells the socket gateway to drop the site's connections).
 */
@Injectable()
export class SitesService {
  private readonly logger = new Logger(SitesService.name);

  constructor(
    @InjectRepository(Site) private readonly sites: Repository<Site>,
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    private readonly transactions: TransactionRunner,
    private readonly verifier: EnrollmentProofVerifier,
    private readonly events: SiteEvents,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  /** Creates a pending site and its first enrolment token. */
  async create(name: string, createdBy: string | null = null): Promise<MintedEnrollment> {
    const parsed = SiteName.safeParse(name);
    if (!parsed.success) throw new BadRequestException(parsed.error.issues.map((i) => i.message));
    const now = this.clock.now();
    const site = this.sites.create({
      id: this.random.uuid(),
      name: parsed.data,
      status: 'pending',
      publicJwk: null,
      kid: null,
      createdAt: now,
      createdBy,
      enrolledAt: null,
      revokedAt: null,
      lastSeenAt: null,
    });
    try {
      return await this.transactions.run(async (manager) => {
        if (await manager.existsBy(Site, { name: site.name })) throw this.nameTaken(site.name);
        await manager.insert(Site, site);
        return { site, ...(await this.mintToken(manager.getRepository(EnrollmentToken), site.id, now)) };
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw this.nameTaken(site.name);
      throw error;
    }
  }

  /** A fresh enrolment token for a site that has not enrolled yet; earlier unused tokens stop working. */
  async reissueToken(siteId: string): Promise<MintedEnrollment> {
    const now = this.clock.now();
    return this.transactions.run(async (manager) => {
      const site = await manager.findOneBy(Site, { id: siteId });
      if (!site) throw new NotFoundException(`no site ${siteId}`);
      if (site.status !== 'pending') {
        throw new ConflictException(`site ${site.name} is ${site.status}; only a pending site can enrol`);
      }
      await manager.delete(EnrollmentToken, { siteId, usedAt: IsNull() });
      return { site, ...(await this.mintToken(manager.getRepository(EnrollmentToken), site.id, now)) };
    });
  }

  list(): Promise<Site[]> {
    return this.sites.find({ order: { name: 'ASC' } });
  }

  async get(id: string): Promise<Site> {
    const site = await this.sites.findOneBy({ id });
    if (!site) throw new NotFoundException(`no site ${id}`);
    return site;
  }

  /** The active site that enrolled the key with this thumbprint, for the per-connection assertion check. */
  findActiveByKid(kid: string): Promise<Site | null> {
    return this.sites.findOneBy({ kid, status: 'active' });
  }

  /** The site (any status) that enrolled the key with this thumbprint, so a gateway can tell "revoked" apart. */
  findByKid(kid: string): Promise<Site | null> {
    return this.sites.findOneBy({ kid });
  }

  /** Records that an active site was just seen (socket connect, heartbeat). */
  async markSeen(siteId: string, at: Date = this.clock.now()): Promise<void> {
    await this.sites.update({ id: siteId, status: 'active' }, { lastSeenAt: at });
  }

  /**
   * Revokes a site: status revoked, its unused tokens deleted, and a `revoked` event so that open connections are
   * closed at once. Revoking a revoked site changes nothing and emits nothing.
   */
  async revoke(siteId: string): Promise<Site> {
    const now = this.clock.now();
    const { site, changed } = await this.transactions.run(async (manager) => {
      const site = await manager.findOneBy(Site, { id: siteId });
      if (!site) throw new NotFoundException(`no site ${siteId}`);
      if (site.status === 'revoked') return { site, changed: false };
      await manager.update(Site, { id: siteId }, { status: 'revoked', revokedAt: now });
      await manager.delete(EnrollmentToken, { siteId, usedAt: IsNull() });
      return { site: { ...site, status: 'revoked' as const, revokedAt: now }, changed: true };
    });
    if (changed) {
      this.logger.log(`revoked site ${site.name} (${site.id})`);
      this.events.emit('revoked', { siteId: site.id, name: site.name, kid: site.kid, revokedAt: now });
    }
    return Object.assign(new Site(), site);
  }

  /**
   * Enrols a site from its proof (see {@link EnrollmentProofVerifier}); the token must belong to the site named
   * in the proof, be unused and unexpired, and is consumed by a conditional update inside the transaction, so
   * of two concurrent enrolments with one token exactly one succeeds.
   */
  async enroll(proof: string): Promise<Site> {
    const verified = await this.verifier.verify(proof);
    const tokenHash = hashEnrollmentToken(verified.enrollmentToken);
    const now = this.clock.now();
    const site = await this.transactions.run(async (manager) => {
      const token = await manager.findOneBy(EnrollmentToken, { tokenHash });
      if (!token || token.siteId !== verified.siteId)
        throw new EnrollmentRefusedError('unknown enrollment token');
      if (token.usedAt) throw new EnrollmentRefusedError('enrollment token already used');
      if (token.expiresAt.getTime() <= now.getTime())
        throw new EnrollmentRefusedError('enrollment token expired');
      const site = await manager.findOneBy(Site, { id: token.siteId });
      if (!site || site.status !== 'pending')
        throw new EnrollmentRefusedError('site is not awaiting enrolment');
      if (await manager.existsBy(Site, { kid: verified.kid })) {
        throw new EnrollmentRefusedError('this key is already registered to a site');
      }
      const claimed = await manager.update(
        EnrollmentToken,
        { id: token.id, usedAt: IsNull(), expiresAt: MoreThan(now) },
        { usedAt: now },
      );
      if (claimed.affected !== 1) throw new EnrollmentRefusedError('enrollment token already used');
      const activated = await manager.update(
        Site,
        { id: site.id, status: 'pending' },
        { status: 'active', publicJwk: verified.publicJwk, kid: verified.kid, enrolledAt: now },
      );
      if (activated.affected !== 1) throw new EnrollmentRefusedError('site is not awaiting enrolment');
      return manager.findOneByOrFail(Site, { id: site.id });
    });
    this.logger.log(`site ${site.name} (${site.id}) enrolled key ${site.kid}`);
    this.events.emit('enrolled', { siteId: site.id, name: site.name, kid: verified.kid, enrolledAt: now });
    return site;
  }

  private async mintToken(repo: Repository<EnrollmentToken>, siteId: string, now: Date) {
    const enrollmentToken = ENROLLMENT_TOKEN_PREFIX + this.random.secret(32);
    const expiresAt = new Date(now.getTime() + this.config.enrollmentTokenTtlSeconds * 1000);
    await repo.insert({
      id: this.random.uuid(),
      tokenHash: hashEnrollmentToken(enrollmentToken),
      siteId,
      createdAt: now,
      expiresAt,
      usedAt: null,
    });
    return { enrollmentToken, expiresAt };
  }

  private nameTaken(name: string): ConflictException {
    return new ConflictException(`a site named ${name} already exists`);
  }
}
