import path from 'node:path';
import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { FileBlobStore } from '@fedsynth/common/blobstore/index';
import {
  type BlobFetched,
  type OkReply,
  ProtocolError,
  type TransferBegin,
  type TransferKind,
  type TransferStatus,
  idSchema,
} from '@fedsynth/common/protocol/index';
import {
  type AckEmitter,
  type CommittedTransfer,
  TransferError,
  TransferReceiver,
  TransferSender,
  blobChunkSource,
} from '@fedsynth/common/transfer/index';
import { BLOB_STORE } from '../blobs/blob-store.provider.js';
import { BlobsService } from '../blobs/blobs.service.js';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import { IntervalScheduler } from '../jobs/interval-scheduler.js';
import type { JobInputRecord } from '../jobs/job.entity.js';
import { JobsService } from '../jobs/jobs.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { commonClock } from './common-clock.js';
import { FEDERATION_OPTIONS, type FederationOptions } from './federation.options.js';

/** Transfer kinds sites upload. */
export const UPLOAD_KINDS = [
  'samples',
  'generator-weights',
  'round-update',
  'job-output',
] as const satisfies readonly TransferKind[];

/** The job an upload belongs to, from its transfer meta (`jobId`, `attempt`), if it names one. */
export function jobRefOfMeta(meta: Record<string, unknown>): { jobId: string; attempt: number } | undefined {
  if (meta.jobId === undefined && meta.attempt === undefined) return undefined;
  const attempt = meta.attempt;
  if (
    !idSchema.safeParse(meta.jobId).success ||
    typeof attempt !== 'number' ||
    !Number.isInteger(attempt) ||
    attempt < 1
  ) {
    throw new ProtocolError(
      'bad_payload',
      'transfer meta: jobId must be a job id and attempt an integer ≥ 1',
    );
  }
  return { jobId: meta.jobId as string, attempt };
}

/** A download's transfer id: fixed per content, so a repeated fetch (after a reconnect) resumes it. */
export function downloadTransferId(sha256: string): string {
  return `dl-${sha256.slice(0, 61)}`;
}

/**
 * Transfers through the coordinator. Uploads: one TransferReceiver, staging under `<dataDir>/transfers`, blobs into
 * the store under `<dataDir>/blobs`, owner = the authenticated site id; an upload names its job attempt, which moves
 * to `uploading` (refused with 'lease_lost' when the attempt is void); each commit is recorded in the `blobs` table. Downloads: the coordinator sends a job's input to the site that asked, resumable by content-derived id.
 */
@Injectable()
export class CoordinatorTransfers implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(CoordinatorTransfers.name);
  readonly receiver: TransferReceiver;
  private readonly downloads = new Map<string, Promise<BlobFetched>>();
  private stopSweep?: () => void;

  constructor(
    @Inject(COORDINATOR_CONFIG) config: CoordinatorConfig,
    @Inject(BLOB_STORE) private readonly store: FileBlobStore,
    @Inject(FEDERATION_OPTIONS) private readonly options: FederationOptions,
    private readonly blobs: BlobsService,
    private readonly jobs: JobsService,
    private readonly metrics: MetricsService,
    private readonly clock: Clock,
    private readonly scheduler: IntervalScheduler,
  ) {
    this.receiver = new TransferReceiver({
      staging: path.join(config.dataDir, 'transfers'),
      blobStore: store,
      clock: commonClock(clock),
      maxTransferBytes: options.maxTransferBytes,
      maxActivePerOwner: options.maxActiveTransfersPerSite,
      acceptKinds: UPLOAD_KINDS,
      onCommitted: (t) => this.recordCommitted(t),
    });
  }

  onModuleInit(): void {
    if (this.options.transferSweepIntervalMs > 0) {
      this.stopSweep = this.scheduler.every(this.options.transferSweepIntervalMs, async () => {
        try {
          const removed = await this.receiver.sweep({
            incompleteMs: this.options.transferIncompleteTtlMs,
            committedMs: this.options.transferCommittedTtlMs,
          });
          if (removed.length) this.logger.log(`removed ${removed.length} stale transfer(s) from staging`);
        } catch (error) {
          this.logger.error(`transfer sweep failed: ${(error as Error).message}`);
        }
      });
    }
  }

  onModuleDestroy(): void {
    this.stopSweep?.();
  }

  /**
   * `transfer:begin` from a site: every upload belongs to a job attempt of that site that holds its lease (named in
   * the meta as jobId and attempt), so a site cannot fill the store with bytes nobody asked for.
   */
  async begin(siteId: string, msg: TransferBegin): Promise<OkReply<TransferStatus>> {
    const ref = jobRefOfMeta(msg.meta);
    if (!ref) {
      throw new ProtocolError(
        'declined',
        'an upload must name the job it belongs to (meta jobId and attempt)',
      );
    }
    await this.jobs.markUploading(siteId, ref.jobId, ref.attempt);
    return this.receiver.begin(siteId, msg);
  }

  /** The receiver's commit hook (before the commit is acked; at least once): provenance and metrics. */
  private async recordCommitted(t: CommittedTransfer): Promise<void> {
    let jobId: string | null = null;
    try {
      jobId = jobRefOfMeta(t.meta)?.jobId ?? null;
    } catch {
      jobId = null; // begin refused such meta; a record from an older process is kept without its job
    }
    const role = typeof t.meta.role === 'string' ? t.meta.role.slice(0, 64) : null;
    const { created } = await this.blobs.recordUpload({
      siteId: t.owner,
      transferId: t.transferId,
      kind: t.kind,
      blob: t.blob,
      jobId,
      role,
      meta: t.meta,
    });
    if (created) {
      this.metrics.bytesReceivedTotal.inc({ kind: t.kind }, t.blob.size);
      this.logger.log(
        `stored ${t.kind} ${t.blob.sha256} (${t.blob.size} bytes) from site ${t.owner}` +
          (jobId ? ` for job ${jobId}` : ''),
      );
    }
  }

  /**
   * Sends a job input to the site over `emitter` (its current connection) and resolves once the site committed it.
   * One send per (site, content) at a time: a second fetch while one runs waits for it.
   */
  async sendToSite(siteId: string, emitter: AckEmitter, input: JobInputRecord): Promise<BlobFetched> {
    const ref = await this.store.stat(input.sha256);
    if (!ref || ref.size !== input.size) {
      throw new ProtocolError('unknown_blob', `blob ${input.sha256} is not stored on the coordinator`);
    }
    const transferId = downloadTransferId(input.sha256);
    const key = `${siteId}/${transferId}`;
    const running = this.downloads.get(key);
    if (running) {
      const previous = await running.catch(() => undefined);
      if (previous) return previous;
    }
    const send = (async (): Promise<BlobFetched> => {
      const sender = new TransferSender({ clock: commonClock(this.clock) });
      try {
        const result = await sender.send(emitter, blobChunkSource(this.store, ref), {
          transferId,
          kind: input.kind,
          meta: { role: input.role },
        });
        this.logger.log(
          `sent ${input.kind} ${ref.sha256} (${ref.size} bytes, ${result.resumedFromBytes} already there) ` +
            `to site ${siteId}`,
        );
        return { transferId, blob: result.blob };
      } catch (error) {
        if (error instanceof TransferError) {
          throw new ProtocolError(
            error.retryable ? 'busy' : 'internal',
            `sending ${ref.sha256}: ${error.message}`,
            error.retryable,
          );
        }
        throw error;
      }
    })();
    this.downloads.set(key, send);
    try {
      return await send;
    } finally {
      if (this.downloads.get(key) === send) this.downloads.delete(key);
    }
  }
}
