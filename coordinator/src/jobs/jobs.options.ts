/** Timing and retry policy of the job state machine. */
export interface JobsOptions {
  /** a site's lease on an accepted job; renewed by job:progress, uploads and heartbeats */
  leaseTtlMs: number;
  /** how long an offered job waits for job:accept before it is offered again */
  offerTtlMs: number;
  /** attempts (started by a site) before a job fails for good; per job with enqueue's `maxAttempts` */
  defaultMaxAttempts: number;
  /** how often the lease sweeper runs (0 = never on its own; call `sweep()`) */
  sweepIntervalMs: number;
}

export const DEFAULT_JOBS_OPTIONS: JobsOptions = Object.freeze({
  leaseTtlMs: 5 * 60_000,
  offerTtlMs: 60_000,
  defaultMaxAttempts: 3,
  sweepIntervalMs: 5_000,
});

/** Injection token of the {@link JobsOptions}. */
export const JOBS_OPTIONS = Symbol.for('fedsynth.coordinator.jobs-options');
