import { Column, Entity, Index, PrimaryColumn, Unique } from 'typeorm';

/** bigint columns come back as strings from pg: sizes are numbers here (exact up to 8 PiB). */
const bigintAsNumber = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null ? null : Number(value)),
};

/**
 * Provenance of a stored blob: who sent it, for which job, what it is. The bytes live in the content-addressed blob
 * store (`<dataDir>/blobs`); one blob may have several records (the same content uploaded twice, or stored by the
 * coordinator and uploaded by a site). A site's upload is recorded once per (site, transfer id), however often the
 * receiver's commit hook runs.
 */
@Entity({ name: 'blobs' })
@Unique('UQ_blobs_site_transfer', ['siteId', 'transferId'])
@Index('IDX_blobs_sha256', ['sha256'])
@Index('IDX_blobs_job_id', ['jobId'])
export class BlobRecord {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** the content address (lowercase hex) */
  @Column({ type: 'varchar', length: 64 })
  sha256!: string;

  @Column({ type: 'bigint', transformer: bigintAsNumber })
  size!: number;

  /** the transfer kind it arrived as (samples, generator-weights, ...), or what the coordinator stored */
  @Column({ type: 'varchar', length: 32 })
  kind!: string;

  /** the site that uploaded it; null for blobs the coordinator made (global weights, audit pools) */
  @Column({ name: 'site_id', type: 'uuid', nullable: true })
  siteId!: string | null;

  /** the job the upload belongs to (from the transfer's meta), if any */
  @Column({ name: 'job_id', type: 'uuid', nullable: true })
  jobId!: string | null;

  @Column({ name: 'transfer_id', type: 'varchar', length: 64, nullable: true })
  transferId!: string | null;

  /** the output's role within its job (e.g. samples, weights), from the transfer's meta */
  @Column({ type: 'varchar', length: 64, nullable: true })
  role!: string | null;

  /** the transfer's meta (strings, numbers, booleans; at most 32 keys) */
  @Column({ type: 'simple-json' })
  meta!: Record<string, string | number | boolean | null>;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;
}

export interface BlobRecordView {
  id: string;
  sha256: string;
  size: number;
  kind: string;
  siteId: string | null;
  jobId: string | null;
  role: string | null;
  meta: Record<string, string | number | boolean | null>;
  createdAt: string;
}

export function toBlobRecordView(b: BlobRecord): BlobRecordView {
  return {
    id: b.id,
    sha256: b.sha256,
    size: b.size,
    kind: b.kind,
    siteId: b.siteId,
    jobId: b.jobId,
    role: b.role,
    meta: b.meta,
    createdAt: b.createdAt.toISOString(),
  };
}
