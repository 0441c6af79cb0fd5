import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { EnrollmentToken } from './enrollment-token.entity.js';
import { EnrollmentProofVerifier } from './enrollment-proof.verifier.js';
import { SiteEvents } from './site-events.js';
import { Site } from './site.entity.js';
import { SitesController } from './sites.controller.js';
import { SitesService } from './sites.service.js';

/** Sites, enrolment tokens and enrolment; exports SitesService and SiteEvents for the socket gateway. */
@Module({
  imports: [TypeOrmModule.forFeature([Site, EnrollmentToken])],
  controllers: [SitesController],
  providers: [SitesService, EnrollmentProofVerifier, SiteEvents],
  exports: [SitesService, SiteEvents],
})
export class SitesModule {}
