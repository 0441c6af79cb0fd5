import { type DynamicModule, Module } from '@nestjs/common';
import type { CoordinatorConfig } from '../config/coordinator-config.js';
import { CoreModule } from '../core/core.module.js';
import { DatabaseModule } from '../database/database.module.js';
import { UsersModule } from '../users/users.module.js';

/** The database and the user service without HTTP, for administration from the command line. */
@Module({})
export class AdminModule {
  static forRoot(config: CoordinatorConfig): DynamicModule {
    return { module: AdminModule, imports: [CoreModule.forRoot({ config }), DatabaseModule, UsersModule] };
  }
}
