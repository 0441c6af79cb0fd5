// What a job handler is given and returns, and the registry the agent looks kinds up in. The study engineer adds
// handlers ('train-round', 'sample', 'evaluate', 'audit') with registerJobHandler; 'echo-upload' ships here.
import type { JobKind, JobOffer, TransferKind } from '@fedsynth/common/protocol/index';
import type { TransferProgress } from '@fedsynth/common/transfer/index';
import type { AgentLogger } from './logger.js';
import type { PrivateSlicesOptions } from './private-slices.js';

export type OfferedJob = JobOffer['job'];

export interface JobProgressDetail {
  stage?: string;
  message?: string;
  metrics?: Record<string, number>;
}

export type UploadSource = { file: string } | { buffer: Buffer };

export interface UploadOptions {
  /** the output's role in the job (one upload per role: uploading a role again with the same bytes is a no-op) */
  role: string;
  /** transfer kind (default 'job-output') */
  kind?: TransferKind;
  meta?: Record<string, string | number | boolean | null>;
  onProgress?: (progress: TransferProgress) => void;
}

/** A blob uploaded for the job, by content address: what `job:result` reports. */
export interface JobOutput {
  role: string;
  sha256: string;
  size: number;
}

export interface JobContext {
  readonly job: OfferedJob;
  /** aborted when the job must stop: lease lost, cancelled by the coordinator, agent stopping */
  readonly signal: AbortSignal;
  /** scratch space for this job (removed when the job is over) */
  readonly workDir: string;
  readonly log: AgentLogger;
  /** fraction in [0, 1]; sent to the coordinator at most once a second (renews the lease) */
  progress(fraction: number, detail?: JobProgressDetail): void;
  /** Uploads a file or buffer with the resumable sender (across reconnects); resolves with its blob address. */
  upload(source: UploadSource, options: UploadOptions): Promise<JobOutput>;
  /** Fetches one of the job's inputs (by role or sha256) into the site's blob store; resolves with its path. */
  download(input: string): Promise<string>;
  /**
   * The site's private slice store for a model's input size (`size`² slices): a store of that size in the data
   * folder, else the data folder's cases sliced once with the matching preset into a cache of the state dir (long
   * the first time: `onProgress` counts cases). Fixed subject split. Private: never upload it. Optional so that
   * hand-made contexts of handlers without data (tests) need not provide it; the agent always does.
   */
  privateSlices?(size: number, options?: PrivateSlicesOptions): Promise<string>;
}

export interface JobOutcome {
  /** default: every upload of the job */
  outputs?: JobOutput[];
  metrics?: Record<string, number>;
  summary?: Record<string, unknown>;
}

export type JobHandler = (ctx: JobContext) => Promise<JobOutcome>;

/** Thrown by a handler to fail its job with a code; `retryable` lets the coordinator try again. */
export class JobError extends Error {
  override readonly name = 'JobError';
  constructor(
    readonly code: string,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
  }
}

export class JobHandlerRegistry {
  private readonly handlers = new Map<JobKind, JobHandler>();

  register(kind: JobKind, handler: JobHandler): this {
    this.handlers.set(kind, handler);
    return this;
  }

  get(kind: string): JobHandler | undefined {
    return this.handlers.get(kind as JobKind);
  }

  kinds(): JobKind[] {
    return [...this.handlers.keys()];
  }
}

/** The registry `fedsynth site run` uses. */
export const defaultJobHandlers = new JobHandlerRegistry();

export function registerJobHandler(kind: JobKind, handler: JobHandler): void {
  defaultJobHandlers.register(kind, handler);
}
