import { Column, Entity, PrimaryColumn } from 'typeorm';

export const RELEASE_STATES = ['building', 'ready', 'failed'] as const;
export type ReleaseState = (typeof RELEASE_STATES)[number];

const bigintAsNumber = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null ? null : Number(value)),
};

/** An immutable, versioned release of an approved audit's pool (DESIGN.md step 7). One per audit. */
@Entity({ name: 'releases' })
export class Release {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** 1, 2, ... over the consortium */
  @Column({ type: 'integer', unique: true })
  version!: number;

  @Column({ name: 'audit_id', type: 'uuid', unique: true })
  auditId!: string;

  @Column({ name: 'study_id', type: 'varchar', length: 128 })
  studyId!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: ReleaseState;

  /** the release folder under the data dir */
  @Column({ type: 'varchar', length: 1024 })
  folder!: string;

  @Column({ name: 'manifest_sha256', type: 'varchar', length: 64, nullable: true })
  manifestSha256!: string | null;

  /** bytes of all files */
  @Column({ type: 'bigint', nullable: true, transformer: bigintAsNumber })
  size!: number | null;

  @Column({ name: 'sample_count', type: 'integer', nullable: true })
  sampleCount!: number | null;

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;

  @Column({ name: 'created_by', type: 'uuid', nullable: true })
  createdBy!: string | null;

  @Column({ name: 'ready_at', type: Date, nullable: true })
  readyAt!: Date | null;
}

export interface ReleaseView {
  id: string;
  version: number;
  auditId: string;
  studyId: string;
  state: ReleaseState;
  manifestSha256: string | null;
  size: number | null;
  sampleCount: number | null;
  error: string | null;
  createdAt: string;
  createdBy: string | null;
  readyAt: string | null;
  download: string | null;
}

export function toReleaseView(r: Release): ReleaseView {
  return {
    id: r.id,
    version: r.version,
    auditId: r.auditId,
    studyId: r.studyId,
    state: r.state,
    manifestSha256: r.manifestSha256,
    size: r.size,
    sampleCount: r.sampleCount,
    error: r.error,
    createdAt: r.createdAt.toISOString(),
    createdBy: r.createdBy,
    readyAt: r.readyAt?.toISOString() ?? null,
    download: r.state === 'ready' ? `/api/releases/${r.id}/download` : null,
  };
}

export const releaseArchiveName = (version: number) => `fedsynth-release-v${version}`;
