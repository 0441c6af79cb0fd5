import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { BlobsModule } from '../blobs/blobs.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { SitesModule } from '../sites/sites.module.js';
import { CoordinatorTransfers } from './coordinator-transfers.js';
import { DEFAULT_FEDERATION_OPTIONS, FEDERATION_OPTIONS } from './federation.options.js';
import { FederationGateway } from './federation.gateway.js';
import { JobDispatcher } from './job-dispatcher.js';
import { SiteAuthenticator, replayCacheProvider } from './site-authenticator.js';
import { SiteConnections } from './site-connections.js';
import { SiteSession } from './site-session.entity.js';
import { SiteSessionsService } from './site-sessions.service.js';

/** The sites' socket.io gateway: authentication, sessions, job offers, uploads and downloads. */
@Module({
  imports: [TypeOrmModule.forFeature([SiteSession]), SitesModule, JobsModule, BlobsModule],
  providers: [
    FederationGateway,
    SiteAuthenticator,
    replayCacheProvider,
    SiteConnections,
    SiteSessionsService,
    CoordinatorTransfers,
    JobDispatcher,
    { provide: FEDERATION_OPTIONS, useValue: DEFAULT_FEDERATION_OPTIONS },
  ],
  exports: [FederationGateway, SiteConnections, SiteSessionsService, CoordinatorTransfers, JobDispatcher],
})
export class FederationModule {}
