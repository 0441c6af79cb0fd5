import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { BlobsModule } from '../blobs/blobs.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { SitesModule } from '../sites/sites.module.js';
import { StudiesModule } from '../studies/studies.module.js';
import { Audit } from './audit.entity.js';
import { AuditsController } from './audits.controller.js';
import { AuditsService } from './audits.service.js';

/** The memorization audit round (the `audits` table, its jobs, the report and the decision). */
@Module({
  imports: [TypeOrmModule.forFeature([Audit]), JobsModule, BlobsModule, SitesModule, StudiesModule],
  controllers: [AuditsController],
  providers: [AuditsService],
  exports: [AuditsService],
})
export class AuditsModule {}
