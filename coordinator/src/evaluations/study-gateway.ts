// What the evaluations need from studies, behind one small class: the pool a generator study produced, starting a
// FedAvg segmenter study, and a study's outcome (its final weights). The default reads the studies module's tables
// and calls StudiesService.create; specs may bind another implementation with STUDY_GATEWAY_OVERRIDE.
import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { StudiesService } from '../studies/studies.service.js';
import { PoolSample, Study } from '../studies/study.entity.js';

export const STUDY_GATEWAY_OVERRIDE = Symbol.for('fedsynth.evaluations.study-gateway-override');

export interface PooledSample {
  siteId: string;
  sha256: string;
}

export interface SegmenterStudySpec {
  name: string;
  model: 'unet' | 'swin';
  profile: 'paper' | 'cpu' | 'tiny';
  rounds: number;
  localSteps: number;
  batchSize: number;
  siteIds: string[];
  data?: { syntheticShare?: number; totalSlices?: number; both?: boolean };
  syntheticPoolSha256?: string;
  createdBy?: string | null;
}

export type StudyOutcome =
  { state: 'running' } | { state: 'done'; weightsSha256: string } | { state: 'failed'; error: string };

export abstract class StudyGateway {
  /** the sample blobs a generator study pooled (one per site); empty when it pooled nothing (yet) */
  abstract poolSamples(studyId: string): Promise<PooledSample[]>;
  /** starts a FedAvg segmenter study; returns its id */
  abstract createSegmenterStudy(spec: SegmenterStudySpec): Promise<string>;
  abstract outcome(studyId: string): Promise<StudyOutcome>;
}

@Injectable()
export class StudiesStudyGateway extends StudyGateway {
  constructor(
    @InjectRepository(Study) private readonly studies: Repository<Study>,
    @InjectRepository(PoolSample) private readonly pool: Repository<PoolSample>,
    private readonly studiesService: StudiesService,
  ) {
    super();
  }

  async poolSamples(studyId: string): Promise<PooledSample[]> {
    const rows = await this.pool.find({ where: { studyId }, order: { createdAt: 'ASC', id: 'ASC' } });
    return rows.map((r) => ({ siteId: r.siteId, sha256: r.sha256 }));
  }

  async createSegmenterStudy(spec: SegmenterStudySpec): Promise<string> {
    const study = await this.studiesService.create(
      {
        name: spec.name,
        model: { task: 'segmenter', model: spec.model, profile: spec.profile },
        mode: 'fedavg',
        rounds: spec.rounds,
        localSteps: spec.localSteps,
        batchSize: spec.batchSize,
        siteIds: spec.siteIds,
        ...(spec.data ? { data: spec.data } : {}),
        ...(spec.syntheticPoolSha256 ? { syntheticPoolSha256: spec.syntheticPoolSha256 } : {}),
      },
      spec.createdBy ?? null,
    );
    return study.id;
  }

  async outcome(studyId: string): Promise<StudyOutcome> {
    const study = await this.studies.findOneBy({ id: studyId });
    if (!study) return { state: 'failed', error: `no study ${studyId}` };
    if (study.state === 'done') {
      return study.modelSha256
        ? { state: 'done', weightsSha256: study.modelSha256 }
        : { state: 'failed', error: `study ${studyId} finished without final weights` };
    }
    if (study.state === 'failed' || study.state === 'cancelled') {
      return {
        state: 'failed',
        error: `study ${studyId} ${study.state}: ${study.error ?? 'no reason given'}`,
      };
    }
    return { state: 'running' };
  }
}
