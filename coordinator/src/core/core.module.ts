import { type DynamicModule, Global, Module } from '@nestjs/common';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from './clock.js';
import { RandomSource } from './random-source.js';

export interface CoreModuleOptions {
  config: CoordinatorConfig;
  /** Replaces the system clock (tests). */
  clock?: Clock;
}

/** The configuration, the clock and the random source, available everywhere. */
@Global()
@Module({})
export class CoreModule {
  static forRoot(options: CoreModuleOptions): DynamicModule {
    return {
      module: CoreModule,
      providers: [
        { provide: COORDINATOR_CONFIG, useValue: options.config },
        options.clock ? { provide: Clock, useValue: options.clock } : Clock,
        RandomSource,
      ],
      exports: [COORDINATOR_CONFIG, Clock, RandomSource],
    };
  }
}
