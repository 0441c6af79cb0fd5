import type { EvaluationSummary } from '@fedsynth/common/protocol/index';
import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

// ---------------------------------------------------------------------------------------------- segmenter runs

export const SEGMENTER_RUN_STATES = ['queued', 'training', 'done', 'failed'] as const;
export type SegmenterRunState = (typeof SEGMENTER_RUN_STATES)[number];

/** what a segmenter was trained on: 'synthetic' (central, on a pool), 'real', 'both' or 'mix:<share>' */
export type TrainedOn = 'synthetic' | 'real' | 'both' | `mix:${string}`;

/** A central segmenter training on a study's synthetic pool (one at a time, in worker threads). */
@Entity({ name: 'segmenter_runs' })
@Index('IDX_segmenter_runs_state', ['state'])
@Index('IDX_segmenter_runs_study', ['studyId'])
export class SegmenterRun {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** the generator study whose pool it trains on */
  @Column({ name: 'study_id', type: 'varchar', length: 64 })
  studyId!: string;

  @Column({ type: 'varchar', length: 16 })
  model!: 'unet' | 'swin';

  @Column({ type: 'varchar', length: 16 })
  profile!: 'paper' | 'cpu' | 'tiny';

  @Column({ type: 'integer' })
  steps!: number;

  @Column({ name: 'batch_size', type: 'integer' })
  batchSize!: number;

  @Column({ name: 'trained_on', type: 'varchar', length: 32 })
  trainedOn!: TrainedOn;

  @Column({ type: 'varchar', length: 16 })
  state!: SegmenterRunState;

  /** the merged pool (a slice store blob) */
  @Column({ name: 'pool_sha256', type: 'varchar', length: 64, nullable: true })
  poolSha256!: string | null;

  @Column({ name: 'pool_slices', type: 'integer', nullable: true })
  poolSlices!: number | null;

  /** the trained weights (a 'segmenter' blob) */
  @Column({ name: 'weights_sha256', type: 'varchar', length: 64, nullable: true })
  weightsSha256!: string | null;

  @Column({ name: 'final_loss', type: 'double precision', nullable: true })
  finalLoss!: number | null;

  @Column({ type: 'double precision', nullable: true })
  seconds!: number | null;

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;

  @Column({ name: 'started_at', type: Date, nullable: true })
  startedAt!: Date | null;

  @Column({ name: 'finished_at', type: Date, nullable: true })
  finishedAt!: Date | null;
}

// ---------------------------------------------------------------------------------------------- evaluations

export const EVALUATION_STATES = ['running', 'done', 'failed'] as const;
export type EvaluationState = (typeof EVALUATION_STATES)[number];

/** One site's part of an evaluation: its 'evaluate' job and, once it answered, its summary or why it was refused. */
export interface SiteEvaluation {
  jobId: string;
  state: 'pending' | 'done' | 'refused' | 'failed';
  summary?: EvaluationSummary;
  error?: string;
}

export interface ScoreTable {
  NCR: number | null;
  ED: number | null;
  ET: number | null;
  WT: number | null;
  TC: number | null;
}

/** The evaluation over all sites: means over every subject of every site that answered, and per site. */
export interface EvaluationAggregate {
  sites: number;
  subjects: number;
  slices: number;
  mean: { dice: ScoreTable; hd95: ScoreTable };
  perSite: Record<string, { subjects: number; slices: number; mean: { dice: ScoreTable; hd95: ScoreTable } }>;
}

/** A federated evaluation: the segmenter sent to every active site, each answering with metrics only. */
@Entity({ name: 'evaluations' })
@Index('IDX_evaluations_state', ['state'])
@Index('IDX_evaluations_weights', ['weightsSha256'])
export class Evaluation {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** what the report calls the model, e.g. 'unet/synthetic' */
  @Column({ type: 'varchar', length: 128 })
  label!: string;

  /** the study named in the jobs' payload (the generator study for a central run, else the segmenter study) */
  @Column({ name: 'study_id', type: 'varchar', length: 64 })
  studyId!: string;

  @Column({ name: 'segmenter_run_id', type: 'uuid', nullable: true })
  segmenterRunId!: string | null;

  @Column({ name: 'weights_sha256', type: 'varchar', length: 64 })
  weightsSha256!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: EvaluationState;

  /** by site id */
  @Column({ type: 'simple-json' })
  sites!: Record<string, SiteEvaluation>;

  @Column({ type: 'simple-json', nullable: true })
  result!: EvaluationAggregate | null;

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: Date })
  updatedAt!: Date;

  @Column({ name: 'finished_at', type: Date, nullable: true })
  finishedAt!: Date | null;
}

// ---------------------------------------------------------------------------------------------- utility runs

export const UTILITY_RUN_STATES = ['running', 'done', 'failed'] as const;
export type UtilityRunState = (typeof UTILITY_RUN_STATES)[number];

export interface UtilityParams {
  model: 'unet' | 'swin';
  profile: 'paper' | 'cpu' | 'tiny';
  steps: number;
  batchSize: number;
  rounds: number;
  localSteps: number;
  mixShares: number[];
  mixTotalSlices?: number;
}

/** One arm of the comparison: how the segmenter was trained, and where its evaluation is. */
export interface UtilityArm {
  /** synthetic | real | both | mix:<share> */
  trainedOn: TrainedOn;
  state: 'pending' | 'training' | 'evaluating' | 'done' | 'failed';
  segmenterRunId?: string;
  /** the FedAvg segmenter study (real, both, mix arms) */
  segmenterStudyId?: string;
  weightsSha256?: string;
  evaluationId?: string;
  error?: string;
}

/** The paper's comparison for one generator study and one segmenter: every arm trained, then evaluated. */
@Entity({ name: 'utility_runs' })
@Index('IDX_utility_runs_study', ['studyId'])
@Index('IDX_utility_runs_state', ['state'])
export class UtilityRun {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** the generator study */
  @Column({ name: 'study_id', type: 'varchar', length: 64 })
  studyId!: string;

  @Column({ type: 'simple-json' })
  params!: UtilityParams;

  @Column({ type: 'varchar', length: 16 })
  state!: UtilityRunState;

  /** the merged pool sent to the 'both' and mixing studies */
  @Column({ name: 'pool_sha256', type: 'varchar', length: 64, nullable: true })
  poolSha256!: string | null;

  @Column({ type: 'simple-json' })
  arms!: UtilityArm[];

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  @Column({ name: 'created_by', type: 'uuid', nullable: true })
  createdBy!: string | null;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: Date })
  updatedAt!: Date;

  @Column({ name: 'finished_at', type: Date, nullable: true })
  finishedAt!: Date | null;
}
