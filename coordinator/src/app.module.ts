import {
  type DynamicModule,
  type ForwardReference,
  Module,
  StandardSchemaValidationPipe,
  type Type,
} from '@nestjs/common';
import { APP_PIPE } from '@nestjs/core';
import type { DestinationStream } from 'pino';
import { AuditsModule } from './audits/audits.module.js';
import { AuthModule } from './auth/auth.module.js';
import { BlobsModule } from './blobs/blobs.module.js';
import type { CoordinatorConfig } from './config/coordinator-config.js';
import type { Clock } from './core/clock.js';
import { CoreModule } from './core/core.module.js';
import { DatabaseModule } from './database/database.module.js';
import { EvaluationEvidence } from './evaluations/evaluation-evidence.js';
import { EvaluationsModule } from './evaluations/evaluations.module.js';
import { FederationModule } from './federation/federation.module.js';
import { HealthModule } from './health/health.module.js';
import { JobsModule } from './jobs/jobs.module.js';
import { KeysModule } from './keys/keys.module.js';
import { LoggingModule } from './logging/logging.module.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { ReleasesModule } from './releases/releases.module.js';
import { SitesModule } from './sites/sites.module.js';
import { StudiesModule } from './studies/studies.module.js';

export type ModuleImport = Type | DynamicModule | Promise<DynamicModule> | ForwardReference;

export interface AppModuleOptions {
  config: CoordinatorConfig;
  clock?: Clock;
  logDestination?: DestinationStream;
  /** Further feature modules (later features, tests). */
  imports?: ModuleImport[];
}

/** The whole coordinator. Request bodies are validated by the zod schema given to `@Body({ schema })`. */
@Module({})
export class AppModule {
  static forRoot(options: AppModuleOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        CoreModule.forRoot({ config: options.config, clock: options.clock }),
        LoggingModule.forRoot(options.config, options.logDestination),
        DatabaseModule,
        KeysModule,
        MetricsModule,
        HealthModule,
        AuthModule,
        SitesModule,
        BlobsModule,
        JobsModule,
        FederationModule,
        StudiesModule,
        EvaluationsModule,
        AuditsModule,
        // the release card's utility numbers come from the evaluations' comparison
        ReleasesModule.withEvidence(EvaluationEvidence, [EvaluationsModule]),
        ...(options.imports ?? []),
      ],
      providers: [{ provide: APP_PIPE, useValue: new StandardSchemaValidationPipe() }],
    };
  }
}
