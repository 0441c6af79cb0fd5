import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Readable } from 'node:stream';
import { type FileBlobStore } from '@fedsynth/common/blobstore/index';
import type { BlobRef } from '@fedsynth/common/blobstore/index';
import { type Repository } from 'typeorm';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { isUniqueViolation } from '../database/unique-violation.js';
import { BlobRecord } from './blob-record.entity.js';
import { BLOB_STORE } from './blob-store.provider.js';

export type BlobMeta = Record<string, string | number | boolean | null>;

export interface UploadProvenance {
  siteId: string;
  transferId: string;
  kind: string;
  blob: BlobRef;
  jobId: string | null;
  role: string | null;
  meta: BlobMeta;
}

export interface LocalBlobOptions {
  /** what it is: a transfer kind the sites know (e.g. global-weights, segmenter, audit-pool) */
  kind: string;
  role?: string;
  jobId?: string;
  meta?: BlobMeta;
}

/**
 * The coordinator's blobs: bytes in the content-addressed store, provenance in the `blobs` table. Site uploads are
 * recorded by the transfer receiver's commit hook; the coordinator's own blobs (weights it sends down) with
 * {@link storeFile} / {@link storeBuffer}.
 */
@Injectable()
export class BlobsService {
  constructor(
    @InjectRepository(BlobRecord) private readonly records: Repository<BlobRecord>,
    @Inject(BLOB_STORE) readonly store: FileBlobStore,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  /**
   * Records a site's committed upload. Idempotent by (site, transfer id): the receiver's hook runs at least once.
   * `created` is false when it was recorded before.
   */
  async recordUpload(p: UploadProvenance): Promise<{ record: BlobRecord; created: boolean }> {
    const existing = await this.records.findOneBy({ siteId: p.siteId, transferId: p.transferId });
    if (existing) return { record: existing, created: false };
    const record = this.records.create({
      id: this.random.uuid(),
      sha256: p.blob.sha256,
      size: p.blob.size,
      kind: p.kind,
      siteId: p.siteId,
      jobId: p.jobId,
      transferId: p.transferId,
      role: p.role,
      meta: p.meta,
      createdAt: this.clock.now(),
    });
    try {
      await this.records.insert(record);
      return { record, created: true };
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      return {
        record: await this.records.findOneByOrFail({ siteId: p.siteId, transferId: p.transferId }),
        created: false,
      };
    }
  }

  /** Stores a file the coordinator made (it is copied; the caller keeps it) and records it. */
  async storeFile(file: string, options: LocalBlobOptions): Promise<BlobRecord> {
    return this.recordLocal(await this.store.putFile(file), options);
  }

  async storeBuffer(data: Buffer, options: LocalBlobOptions): Promise<BlobRecord> {
    return this.recordLocal(await this.store.putStream(Readable.from([data])), options);
  }

  /** Does this site's upload of exactly these bytes for this job exist? (job results name only such blobs) */
  async hasUpload(siteId: string, jobId: string, sha256: string, size: number): Promise<boolean> {
    return this.records.existsBy({ siteId, jobId, sha256, size });
  }

  findByJob(jobId: string): Promise<BlobRecord[]> {
    return this.records.find({ where: { jobId }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  findBySha256(sha256: string): Promise<BlobRecord[]> {
    return this.records.find({ where: { sha256 }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  stat(sha256: string): Promise<BlobRef | undefined> {
    return this.store.stat(sha256);
  }

  open(sha256: string): Promise<Readable> {
    return this.store.createReadStream(sha256);
  }

  private async recordLocal(blob: BlobRef, options: LocalBlobOptions): Promise<BlobRecord> {
    const record = this.records.create({
      id: this.random.uuid(),
      sha256: blob.sha256,
      size: blob.size,
      kind: options.kind,
      siteId: null,
      jobId: options.jobId ?? null,
      transferId: null,
      role: options.role ?? null,
      meta: options.meta ?? {},
      createdAt: this.clock.now(),
    });
    await this.records.insert(record);
    return record;
  }
}
