import { NestFactory } from '@nestjs/core';
import type { CoordinatorConfig, CoordinatorConfigInput } from '../config/coordinator-config.js';
import { coordinatorConfig } from '../create-coordinator-app.js';
import { toUserView, type UserView } from '../users/user.entity.js';
import { UsersService } from '../users/users.service.js';
import { AdminModule } from './admin.module.js';

export interface NewUser {
  username: string;
  role: string;
  password: string;
}

/**
 * Creates a user straight in the coordinator's database (migrating it first), through the same UsersService as
 * the REST API: `fedsynth admin create-user`. Works whether or not the coordinator is running.
 */
export async function createUserOffline(
  input: CoordinatorConfigInput | CoordinatorConfig,
  user: NewUser,
  options: { env?: Readonly<Record<string, string | undefined>>; cwd?: string } = {},
): Promise<UserView> {
  const config = coordinatorConfig(input, options);
  const context = await NestFactory.createApplicationContext(AdminModule.forRoot(config), {
    logger: false,
    abortOnError: false,
  });
  try {
    return toUserView(await context.get(UsersService).create(user));
  } finally {
    await context.close();
  }
}
