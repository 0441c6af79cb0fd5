import { Global, Module } from '@nestjs/common';
import { CoordinatorKeyService } from './coordinator-key.service.js';

@Global()
@Module({ providers: [CoordinatorKeyService], exports: [CoordinatorKeyService] })
export class KeysModule {}
