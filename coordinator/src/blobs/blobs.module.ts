import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { BlobRecord } from './blob-record.entity.js';
import { BLOB_STORE, blobStoreProvider } from './blob-store.provider.js';
import { BlobsService } from './blobs.service.js';

/** The content-addressed blob store under `<dataDir>/blobs` and the `blobs` provenance table. */
@Module({
  imports: [TypeOrmModule.forFeature([BlobRecord])],
  providers: [blobStoreProvider, BlobsService],
  exports: [BLOB_STORE, BlobsService],
})
export class BlobsModule {}
