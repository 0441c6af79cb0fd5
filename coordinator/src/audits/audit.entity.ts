import type { AuditScores } from '@fedsynth/common/protocol/job-payloads';
import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** scoring (jobs out at the sites) → scored (every site answered) → approved | rejected (final); or failed. */
export const AUDIT_STATES = ['scoring', 'scored', 'approved', 'rejected', 'failed'] as const;
export type AuditState = (typeof AUDIT_STATES)[number];

/** Equal-width bins over [min, max]; the last bin includes max. */
export interface Histogram {
  min: number;
  max: number;
  counts: number[];
}

/** One sample store in the candidate pool: candidates [first, first + count) came from this site's sample job. */
export interface AuditSource {
  jobId: string;
  siteId: string;
  sha256: string;
  first: number;
  count: number;
  /** e.g. 'stylegan2/cpu' (from the sample job's payload) */
  generator: string;
  seed: number | null;
}

/** Where a site's threshold reference came from (see common/src/audit). */
export type ReferenceKind = NonNullable<AuditScores['referenceKind']>;

export type AuditSiteState = 'pending' | 'scored' | 'refused' | 'failed';

/** What one site answered (numbers only; the per-candidate scores stay in its `scores` blob). */
export interface AuditSiteResult {
  siteId: string;
  siteName: string;
  jobId: string | null;
  state: AuditSiteState;
  scoresSha256?: string;
  threshold?: number;
  /** candidates the site flagged (or scored above its threshold), ascending */
  flagged?: number[];
  maxScore?: number;
  scoreHistogram?: Histogram;
  referenceHistogram?: Histogram;
  referenceCount?: number;
  /**
   * where the site's reference came from: its held-out test slices, or (no held-out subject) its training slices
   * each scored against its other training patients; absent on results stored before the field ('held-out')
   */
  referenceKind?: ReferenceKind;
  error?: string;
}

export interface AuditCombined {
  /** per candidate, the maximum score over the sites */
  maxScores: number[];
  histogram: Histogram;
  /** candidates flagged by at least one site, ascending: never released */
  withheld: number[];
}

/** A memorization audit of a study's candidate pool (DESIGN.md step 6). */
@Entity({ name: 'audits' })
@Index('IDX_audits_study', ['studyId'])
export class Audit {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'study_id', type: 'varchar', length: 128 })
  studyId!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: AuditState;

  @Column({ type: 'double precision' })
  margin!: number;

  @Column({ name: 'candidate_count', type: 'integer' })
  candidateCount!: number;

  /** the candidate pool (a slice store in the blob store, kind 'audit-pool') */
  @Column({ name: 'pool_sha256', type: 'varchar', length: 64 })
  poolSha256!: string;

  @Column({ type: 'simple-json' })
  sources!: AuditSource[];

  @Column({ name: 'site_results', type: 'simple-json' })
  siteResults!: AuditSiteResult[];

  @Column({ type: 'simple-json', nullable: true })
  combined!: AuditCombined | null;

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  /** optimistic concurrency: every update names the revision it read */
  @Column({ type: 'integer' })
  revision!: number;

  @Column({ name: 'created_by', type: 'uuid', nullable: true })
  createdBy!: string | null;

  @Column({ name: 'decided_by', type: 'uuid', nullable: true })
  decidedBy!: string | null;

  @Column({ name: 'decision_comment', type: 'text', nullable: true })
  decisionComment!: string | null;

  @Column({ name: 'decided_at', type: Date, nullable: true })
  decidedAt!: Date | null;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: Date })
  updatedAt!: Date;
}
