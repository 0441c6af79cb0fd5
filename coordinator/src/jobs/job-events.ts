import { Injectable } from '@nestjs/common';
import type { Job, JobErrorRecord, JobState } from './job.entity.js';
import { TypedEvents } from './typed-events.js';

export type QueuedReason = 'enqueued' | 'requeued' | 'offer_expired';

export interface JobEventMap {
  /** waiting to be offered: new, requeued after a failed/expired attempt, or its offer expired unanswered */
  queued: { job: Job; reason: QueuedReason };
  /** the site accepted the offer (attempt `job.attempt` started) */
  assigned: { job: Job };
  progress: { job: Job };
  /** the site began uploading an output */
  uploading: { job: Job };
  /** an attempt ended without a result and the job goes back to the queue (attempt + 1) */
  requeued: { job: Job; reason: 'failed' | 'lease_expired'; error: JobErrorRecord };
  /** terminal: the result is recorded (`job.result`, outputs are blob content addresses) */
  done: { job: Job };
  /**
   * terminal: `job.error` says why; `previousState` tells whether a site was working on it; `bySite` whether the
   * site itself reported the failure (else the coordinator ended it: lease expiry, cancel, decline, revocation)
   */
  failed: { job: Job; previousState: JobState; bySite: boolean };
}

/**
 * In-process notifications about jobs, emitted after the state change was persisted. The study orchestrator
 * subscribes to `done` and `failed`; the federation gateway to `queued` (to offer) and `failed` (to cancel).
 */
@Injectable()
export class JobEvents extends TypedEvents<JobEventMap> {}
