import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { BlobsModule } from '../blobs/blobs.module.js';
import { SiteSession } from '../federation/site-session.entity.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { SitesModule } from '../sites/sites.module.js';
import { DEFAULT_STUDIES_OPTIONS, STUDIES_OPTIONS } from './studies.options.js';
import { StudiesController } from './studies.controller.js';
import { StudiesService } from './studies.service.js';
import { StudyEvents } from './study-events.js';
import { StudyMetrics } from './study-metrics.js';
import { StudyOrchestrator } from './study-orchestrator.js';
import { PoolSample, Study, StudyRound } from './study.entity.js';

/** Studies: REST, the round orchestrator, the pool; exports StudiesService and StudyEvents. */
@Module({
  imports: [
    TypeOrmModule.forFeature([Study, StudyRound, PoolSample, SiteSession]),
    JobsModule,
    BlobsModule,
    SitesModule,
  ],
  controllers: [StudiesController],
  providers: [
    StudiesService,
    StudyOrchestrator,
    StudyEvents,
    StudyMetrics,
    { provide: STUDIES_OPTIONS, useValue: DEFAULT_STUDIES_OPTIONS },
  ],
  exports: [StudiesService, StudyEvents, StudyOrchestrator],
})
export class StudiesModule {}
