// @fedsynth/coordinator: the NestJS consortium coordinator. Loading this module loads Nest; the fedsynth CLI
// imports it dynamically, only for `fedsynth coordinator` and `fedsynth admin`.
import 'reflect-metadata';

export {
  type CoordinatorConfig,
  type CoordinatorConfigInput,
  type DatabaseConfig,
  type LogLevel,
  type ResolveConfigOptions,
  AUDIENCE_PREFIX,
  CONFIG_ENV_VARS,
  COORDINATOR_CONFIG,
  ConfigError,
  coordinatorAudienceForUrl,
  describeDatabase,
  isResolvedCoordinatorConfig,
  LOG_LEVELS,
  maskDatabaseUrl,
  resolveCoordinatorConfig,
} from './config/coordinator-config.js';
export {
  type CoordinatorApp,
  type CreateCoordinatorAppOptions,
  coordinatorConfig,
  createCoordinatorApp,
} from './create-coordinator-app.js';
export { type RunningCoordinator, type ServeOptions, serveCoordinator } from './serve.js';
export { createUserOffline, type NewUser } from './admin/create-user.js';
export { AppModule, type AppModuleOptions } from './app.module.js';
export { Clock, ManualClock } from './core/clock.js';
export { RandomSource } from './core/random-source.js';
export { TransactionRunner } from './database/transaction-runner.js';
export { MetricsService } from './metrics/metrics.service.js';
export { CoordinatorKeyService } from './keys/coordinator-key.service.js';
export { Public, Roles } from './auth/roles.decorator.js';
export { type AuthenticatedUser, CurrentUser } from './auth/authenticated-user.js';
export { TokenService } from './auth/token.service.js';
export { ROLES, type Role } from './users/role.js';
export { UsersService } from './users/users.service.js';
export { type UserView } from './users/user.entity.js';
export { Site, type SitePublicJwk, type SiteStatus, type SiteView } from './sites/site.entity.js';
export {
  SiteEvents,
  type SiteEnrolledEvent,
  type SiteEventMap,
  type SiteRevokedEvent,
} from './sites/site-events.js';
export { SitesModule } from './sites/sites.module.js';
export { SitesService } from './sites/sites.service.js';
export { COORDINATOR_VERSION } from './version.js';
export { BlobsModule } from './blobs/blobs.module.js';
export { BlobsService, type BlobMeta, type LocalBlobOptions } from './blobs/blobs.service.js';
export { BlobRecord, type BlobRecordView, toBlobRecordView } from './blobs/blob-record.entity.js';
export { BLOB_STORE } from './blobs/blob-store.provider.js';
export { JobsModule } from './jobs/jobs.module.js';
export { JobsService, type EnqueueOptions, type JobFilter, type SweepResult } from './jobs/jobs.service.js';
export { JobEvents, type JobEventMap, type QueuedReason } from './jobs/job-events.js';
export {
  ACTIVE_JOB_STATES,
  JOB_STATES,
  Job,
  type JobInputRecord,
  type JobResultRecord,
  type JobState,
  type JobView,
  toJobView,
} from './jobs/job.entity.js';
export { DEFAULT_JOBS_OPTIONS, JOBS_OPTIONS, type JobsOptions } from './jobs/jobs.options.js';
export { FederationModule } from './federation/federation.module.js';
export { FederationGateway } from './federation/federation.gateway.js';
export { SiteConnections } from './federation/site-connections.js';
export { SiteSessionsService } from './federation/site-sessions.service.js';
export { SiteSession } from './federation/site-session.entity.js';
export { CoordinatorTransfers } from './federation/coordinator-transfers.js';
export {
  DEFAULT_FEDERATION_OPTIONS,
  FEDERATION_OPTIONS,
  type FederationOptions,
} from './federation/federation.options.js';
