import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { PasswordHasher } from '../auth/password-hasher.js';
import { User } from './user.entity.js';
import { UsersService } from './users.service.js';

/** The user store without HTTP (the admin CLI uses it alone); the REST controller lives in AuthModule. */
@Module({
  imports: [TypeOrmModule.forFeature([User])],
  providers: [UsersService, PasswordHasher],
  exports: [UsersService],
})
export class UsersModule {}
