import type { JobKind, TransferKind } from '@fedsynth/common/protocol/index';
import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * queued → assigned → running → uploading → done, or failed. `queued` with a lease = offered to the site and
 * awaiting its `job:accept` until the lease (the offer's deadline); without = waiting to be offered.
 */
export const JOB_STATES = ['queued', 'assigned', 'running', 'uploading', 'done', 'failed'] as const;
export type JobState = (typeof JOB_STATES)[number];
/** states in which a site works on the job under a lease */
export const ACTIVE_JOB_STATES = ['assigned', 'running', 'uploading'] as const satisfies readonly JobState[];
export const TERMINAL_JOB_STATES = ['done', 'failed'] as const satisfies readonly JobState[];

export function isActiveJobState(state: JobState): state is (typeof ACTIVE_JOB_STATES)[number] {
  return (ACTIVE_JOB_STATES as readonly JobState[]).includes(state);
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A blob the site may fetch for the job (`blob:fetch`), and the transfer kind it is sent as. */
export interface JobInputRecord {
  role: string;
  sha256: string;
  size: number;
  kind: TransferKind;
}

export interface JobProgressRecord {
  fraction: number;
  stage?: string;
  message?: string;
  metrics?: Record<string, number>;
  /** ISO time the coordinator received it */
  at: string;
}

export interface JobResultRecord {
  outputs: Array<{ role: string; sha256: string; size: number }>;
  metrics?: Record<string, number>;
  summary?: Record<string, unknown>;
}

export interface JobErrorRecord {
  code: string;
  message: string;
  retryable: boolean;
  /** the attempt that failed */
  attempt: number;
  /** ISO time */
  at: string;
}

/** A unit of work for one site, persisted as a state machine with leases (see JobsService). */
@Entity({ name: 'jobs' })
@Index('IDX_jobs_site_state', ['siteId', 'state'])
@Index('IDX_jobs_state_lease', ['state', 'leaseExpiresAt'])
@Index('IDX_jobs_study_round', ['studyId', 'roundId'])
export class Job {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'site_id', type: 'uuid' })
  siteId!: string;

  @Column({ type: 'varchar', length: 64 })
  kind!: JobKind;

  /** kind-specific parameters, sent to the site in the offer */
  @Column({ type: 'simple-json' })
  payload!: Record<string, unknown>;

  @Column({ type: 'simple-json' })
  inputs!: JobInputRecord[];

  @Column({ type: 'varchar', length: 16 })
  state!: JobState;

  /** 1 for the first attempt; +1 each time the job is requeued after a site started it (the fencing token) */
  @Column({ type: 'integer' })
  attempt!: number;

  @Column({ name: 'max_attempts', type: 'integer' })
  maxAttempts!: number;

  /** active states: the site's lease; queued: the offer's deadline (null = not offered) */
  @Column({ name: 'lease_expires_at', type: Date, nullable: true })
  leaseExpiresAt!: Date | null;

  @Column({ type: 'simple-json', nullable: true })
  progress!: JobProgressRecord | null;

  @Column({ type: 'simple-json', nullable: true })
  result!: JobResultRecord | null;

  /** the last failure (also kept when a retry was queued) */
  @Column({ type: 'simple-json', nullable: true })
  error!: JobErrorRecord | null;

  @Column({ name: 'study_id', type: 'varchar', length: 128, nullable: true })
  studyId!: string | null;

  @Column({ name: 'round_id', type: 'varchar', length: 128, nullable: true })
  roundId!: string | null;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: Date })
  updatedAt!: Date;

  /** when the current attempt was accepted */
  @Column({ name: 'started_at', type: Date, nullable: true })
  startedAt!: Date | null;

  @Column({ name: 'finished_at', type: Date, nullable: true })
  finishedAt!: Date | null;
}

export interface JobView {
  id: string;
  siteId: string;
  kind: JobKind;
  state: JobState;
  attempt: number;
  maxAttempts: number;
  leaseExpiresAt: string | null;
  payload: Record<string, unknown>;
  inputs: JobInputRecord[];
  progress: JobProgressRecord | null;
  result: JobResultRecord | null;
  error: JobErrorRecord | null;
  studyId: string | null;
  roundId: string | null;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export function toJobView(j: Job): JobView {
  return {
    id: j.id,
    siteId: j.siteId,
    kind: j.kind,
    state: j.state,
    attempt: j.attempt,
    maxAttempts: j.maxAttempts,
    leaseExpiresAt: j.leaseExpiresAt?.toISOString() ?? null,
    payload: j.payload,
    inputs: j.inputs,
    progress: j.progress,
    result: j.result,
    error: j.error,
    studyId: j.studyId,
    roundId: j.roundId,
    createdAt: j.createdAt.toISOString(),
    updatedAt: j.updatedAt.toISOString(),
    startedAt: j.startedAt?.toISOString() ?? null,
    finishedAt: j.finishedAt?.toISOString() ?? null,
  };
}
