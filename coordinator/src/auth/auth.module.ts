import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { UsersController } from '../users/users.controller.js';
import { UsersModule } from '../users/users.module.js';
import { AuthController } from './auth.controller.js';
import { RolesGuard } from './roles.guard.js';
import { TokenService } from './token.service.js';

/** Login, user tokens, the user admin API and the global RolesGuard (default deny). */
@Module({
  imports: [UsersModule],
  controllers: [AuthController, UsersController],
  providers: [TokenService, { provide: APP_GUARD, useClass: RolesGuard }],
  exports: [TokenService],
})
export class AuthModule {}
