import { Column, Entity, PrimaryColumn } from 'typeorm';

export const SITE_STATUSES = ['pending', 'active', 'revoked'] as const;
export type SiteStatus = (typeof SITE_STATUSES)[number];

/** The public part of a site's Ed25519 key, as registered at enrolment. */
export interface SitePublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
}

/** A hospital site. pending (created by an admin) → active (enrolled its key) → revoked. */
@Entity({ name: 'sites' })
export class Site {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ type: 'varchar', length: 64, unique: true })
  name!: string;

  @Column({ type: 'varchar', length: 16 })
  status!: SiteStatus;

  @Column({ name: 'public_jwk', type: 'simple-json', nullable: true })
  publicJwk!: SitePublicJwk | null;

  /** RFC 7638 JWK thumbprint (SHA-256, base64url) of {@link publicJwk}. */
  @Column({ type: 'varchar', length: 64, nullable: true, unique: true })
  kid!: string | null;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;

  /** The admin who created the site (null if that account was deleted). */
  @Column({ name: 'created_by', type: 'uuid', nullable: true })
  createdBy!: string | null;

  @Column({ name: 'enrolled_at', type: Date, nullable: true })
  enrolledAt!: Date | null;

  @Column({ name: 'revoked_at', type: Date, nullable: true })
  revokedAt!: Date | null;

  @Column({ name: 'last_seen_at', type: Date, nullable: true })
  lastSeenAt!: Date | null;
}

/** What the API shows of a site. */
export interface SiteView {
  id: string;
  name: string;
  status: SiteStatus;
  kid: string | null;
  publicJwk: SitePublicJwk | null;
  createdAt: string;
  enrolledAt: string | null;
  revokedAt: string | null;
  lastSeenAt: string | null;
}

export function toSiteView(site: Site): SiteView {
  return {
    id: site.id,
    name: site.name,
    status: site.status,
    kid: site.kid,
    publicJwk: site.publicJwk,
    createdAt: site.createdAt.toISOString(),
    enrolledAt: site.enrolledAt?.toISOString() ?? null,
    revokedAt: site.revokedAt?.toISOString() ?? null,
    lastSeenAt: site.lastSeenAt?.toISOString() ?? null,
  };
}
