import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { BlobsModule } from '../blobs/blobs.module.js';
import { SitesModule } from '../sites/sites.module.js';
import { IntervalScheduler } from './interval-scheduler.js';
import { JobEvents } from './job-events.js';
import { Job } from './job.entity.js';
import { DEFAULT_JOBS_OPTIONS, JOBS_OPTIONS } from './jobs.options.js';
import { JobsService } from './jobs.service.js';

/** Persisted jobs with leases, their events and the lease sweeper; exports JobsService and JobEvents. */
@Module({
  imports: [TypeOrmModule.forFeature([Job]), BlobsModule, SitesModule],
  providers: [
    JobsService,
    JobEvents,
    IntervalScheduler,
    { provide: JOBS_OPTIONS, useValue: DEFAULT_JOBS_OPTIONS },
  ],
  exports: [JobsService, JobEvents, IntervalScheduler, JOBS_OPTIONS],
})
export class JobsModule {}
