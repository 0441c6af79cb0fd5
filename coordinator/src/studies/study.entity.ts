import type { ModelSpec, TrainRoundPayload } from '@fedsynth/common/protocol/index';
import { Column, Entity, Index, PrimaryColumn, Unique } from 'typeorm';

/** bigint columns come back as strings from pg: numbers here (timeouts and sizes stay far below 2^53). */
const bigintAsNumber = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null ? null : Number(value)),
};

export const STUDY_STATES = ['running', 'sampling', 'done', 'failed', 'cancelled'] as const;
export type StudyState = (typeof STUDY_STATES)[number];
export const STUDY_MODES = ['fedavg', 'local'] as const;
export type StudyMode = (typeof STUDY_MODES)[number];
export const ROUND_STATES = ['open', 'done'] as const;
export type RoundState = (typeof ROUND_STATES)[number];

export type StudyDataMix = NonNullable<TrainRoundPayload['data']>;

/**
 * A federated training study: `rounds` rounds of 'train-round' jobs at the selected sites (FedAvg or each site on
 * its own), then, for generators, one 'sample' job per site whose samples are pooled.
 * running → sampling (generators) → done, or failed / cancelled.
 */
@Entity({ name: 'studies' })
@Index('IDX_studies_state', ['state'])
export class Study {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ type: 'varchar', length: 128 })
  name!: string;

  @Column({ type: 'simple-json' })
  model!: ModelSpec;

  @Column({ type: 'varchar', length: 16 })
  mode!: StudyMode;

  @Column({ type: 'integer' })
  rounds!: number;

  @Column({ name: 'local_steps', type: 'integer' })
  localSteps!: number;

  @Column({ name: 'batch_size', type: 'integer' })
  batchSize!: number;

  /** slices each site draws after the last round (generators); 0 for segmenter studies */
  @Column({ name: 'samples_per_site', type: 'integer' })
  samplesPerSite!: number;

  @Column({ name: 'min_sites', type: 'integer' })
  minSites!: number;

  @Column({ name: 'round_timeout_ms', type: 'bigint', transformer: bigintAsNumber })
  roundTimeoutMs!: number;

  /** optional wall-clock budget a site gets for one round (TrainRoundPayload.maxSeconds) */
  @Column({ name: 'max_seconds', type: 'double precision', nullable: true })
  maxSeconds!: number | null;

  /** the selected sites, in the order given */
  @Column({ name: 'site_ids', type: 'simple-json' })
  siteIds!: string[];

  @Column({ type: 'integer' })
  seed!: number;

  @Column({ name: 'truncation_psi', type: 'double precision' })
  truncationPsi!: number;

  @Column({ name: 'ddim_steps', type: 'integer' })
  ddimSteps!: number;

  /** segmenters: what the sites train on (TrainRoundPayload.data) */
  @Column({ type: 'simple-json', nullable: true })
  data!: StudyDataMix | null;

  /** a slice store on the coordinator sent to every site as the 'synthetic-pool' input */
  @Column({ name: 'synthetic_pool_sha256', type: 'varchar', length: 64, nullable: true })
  syntheticPoolSha256!: string | null;

  @Column({ type: 'varchar', length: 16 })
  state!: StudyState;

  /** index of the round in progress (= rounds once training ended) */
  @Column({ name: 'current_round', type: 'integer' })
  currentRound!: number;

  /** generators: the sites asked to sample (fixed when sampling starts) */
  @Column({ name: 'sampling_site_ids', type: 'simple-json', nullable: true })
  samplingSiteIds!: string[] | null;

  /** segmenter studies: the final global weights, stored as a 'segmenter' blob */
  @Column({ name: 'model_sha256', type: 'varchar', length: 64, nullable: true })
  modelSha256!: string | null;

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

/** What one site's finished train-round job brought to its round. */
export interface RoundContribution {
  jobId: string;
  weightsSha256: string;
  emaSha256: string | null;
  /** the FedAvg weight (the job's metrics.trainSlices) */
  trainSlices: number;
  steps: number | null;
  finalLoss: number | null;
  seconds: number | null;
}

/** One round of a study. Its jobs carry roundId = this row's id. */
@Entity({ name: 'study_rounds' })
@Unique('UQ_study_rounds_study_index', ['studyId', 'index'])
export class StudyRound {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'study_id', type: 'uuid' })
  studyId!: string;

  @Column({ name: 'round_index', type: 'integer' })
  index!: number;

  @Column({ type: 'varchar', length: 16 })
  state!: RoundState;

  @Column({ name: 'started_at', type: Date })
  startedAt!: Date;

  /** after it, the round closes as soon as minSites contributed */
  @Column({ type: Date })
  deadline!: Date;

  @Column({ name: 'closed_at', type: Date, nullable: true })
  closedAt!: Date | null;

  /** the sites given a job in this round */
  @Column({ type: 'simple-json' })
  participants!: string[];

  /** the sites whose results were used (set when the round closes) */
  @Column({ type: 'simple-json' })
  contributors!: string[];

  /** fedavg: the global weights (and EMA) the round started from; null in round 0 and local mode */
  @Column({ name: 'input_weights_sha256', type: 'varchar', length: 64, nullable: true })
  inputWeightsSha256!: string | null;

  @Column({ name: 'input_ema_sha256', type: 'varchar', length: 64, nullable: true })
  inputEmaSha256!: string | null;

  /** fedavg: the average the round produced */
  @Column({ name: 'output_weights_sha256', type: 'varchar', length: 64, nullable: true })
  outputWeightsSha256!: string | null;

  @Column({ name: 'output_ema_sha256', type: 'varchar', length: 64, nullable: true })
  outputEmaSha256!: string | null;

  /** by site id */
  @Column({ type: 'simple-json' })
  contributions!: Record<string, RoundContribution>;
}

/** Provenance of one site's sample blob pooled by a study; one per (study, site), however often it is retried. */
@Entity({ name: 'pool_samples' })
@Unique('UQ_pool_samples_study_site', ['studyId', 'siteId'])
export class PoolSample {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'study_id', type: 'uuid' })
  studyId!: string;

  @Column({ name: 'site_id', type: 'uuid' })
  siteId!: string;

  @Column({ name: 'job_id', type: 'uuid' })
  jobId!: string;

  @Column({ type: 'varchar', length: 64 })
  sha256!: string;

  @Column({ type: 'bigint', transformer: bigintAsNumber })
  size!: number;

  /** slices in the blob (the job's metrics.count) */
  @Column({ type: 'integer' })
  count!: number;

  /** the generator model (progan, stylegan2, ddpm, ...) */
  @Column({ type: 'varchar', length: 32 })
  generator!: string;

  @Column({ type: 'integer' })
  seed!: number;

  /** the round whose weights drew the samples (the last one) */
  @Column({ name: 'round_index', type: 'integer' })
  round!: number;

  @Column({ name: 'created_at', type: Date })
  createdAt!: Date;
}
