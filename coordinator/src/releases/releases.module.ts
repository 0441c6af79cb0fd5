import { type DynamicModule, Module, type Type } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { ModuleImport } from '../app.module.js';
import { AuditsModule } from '../audits/audits.module.js';
import { BlobsModule } from '../blobs/blobs.module.js';
import { UsersModule } from '../users/users.module.js';
import { ReleaseEvidence } from './release-evidence.js';
import { Release } from './release.entity.js';
import { ReleasesController } from './releases.controller.js';
import { ReleasesService } from './releases.service.js';

const base = {
  imports: [TypeOrmModule.forFeature([Release]), AuditsModule, BlobsModule, UsersModule],
  controllers: [ReleasesController],
  exports: [ReleasesService],
};

/** Immutable, versioned releases of approved audits; the card's evaluation numbers come from ReleaseEvidence. */
@Module({ ...base, providers: [ReleasesService, ReleaseEvidence] })
export class ReleasesModule {
  /** The same module with another evidence provider (a subclass of ReleaseEvidence) and what it needs. */
  static withEvidence(evidence: Type<ReleaseEvidence>, imports: ModuleImport[] = []): DynamicModule {
    return {
      module: ReleasesModule,
      ...base,
      imports: [...base.imports, ...imports],
      providers: [ReleasesService, { provide: ReleaseEvidence, useClass: evidence }],
    };
  }
}
