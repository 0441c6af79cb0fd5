import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A one-time site enrolment token. Only its SHA-256 is stored; the token itself is shown once, at creation. */
@Entity({ name: 'enrollment_tokens' })
export class EnrollmentToken {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** Hex SHA-256 of the token string. */
  @Column({ name: 'token_hash', type: 'varchar', length: 64, unique: true })
  tokenHash!: string;

  @Column({ name: 'site_id', type: 'uuid' })
  siteId!: string;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;

  @Column({ name: 'expires_at', type: Date })
  expiresAt!: Date;

  /** Set once, by the enrolment that consumed the token. */
  @Column({ name: 'used_at', type: Date, nullable: true })
  usedAt!: Date | null;
}
