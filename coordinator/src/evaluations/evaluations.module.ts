import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { BlobsModule } from '../blobs/blobs.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { SitesModule } from '../sites/sites.module.js';
import { StudiesModule } from '../studies/studies.module.js';
import { PoolSample, Study } from '../studies/study.entity.js';
import { Evaluation, SegmenterRun, UtilityRun } from './evaluation.entities.js';
import { EvaluationsController } from './evaluations.controller.js';
import { EvaluationsService } from './evaluations.service.js';
import {
  DEFAULT_SEGMENTATION_OPTIONS,
  SEGMENTATION_OPTIONS,
  SegmentationService,
} from './segmentation.service.js';
import { STUDY_GATEWAY_OVERRIDE, StudiesStudyGateway, StudyGateway } from './study-gateway.js';
import { UtilityService } from './utility.service.js';

/**
 * Central segmentation on a study's pool, federated evaluation and the paper's comparison. The study side is
 * reached through StudyGateway (StudiesStudyGateway, unless a global provider of STUDY_GATEWAY_OVERRIDE exists).
 */
@Module({
  imports: [
    TypeOrmModule.forFeature([SegmenterRun, Evaluation, UtilityRun, Study, PoolSample]),
    BlobsModule,
    JobsModule,
    SitesModule,
    StudiesModule,
  ],
  controllers: [EvaluationsController],
  providers: [
    StudiesStudyGateway,
    {
      provide: StudyGateway,
      inject: [{ token: STUDY_GATEWAY_OVERRIDE, optional: true }, StudiesStudyGateway],
      useFactory: (override: StudyGateway | undefined, fallback: StudiesStudyGateway) => override ?? fallback,
    },
    { provide: SEGMENTATION_OPTIONS, useValue: DEFAULT_SEGMENTATION_OPTIONS },
    SegmentationService,
    EvaluationsService,
    UtilityService,
  ],
  exports: [SegmentationService, EvaluationsService, UtilityService, StudyGateway],
})
export class EvaluationsModule {}
