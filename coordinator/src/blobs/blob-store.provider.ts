import path from 'node:path';
import type { Provider } from '@nestjs/common';
import { FileBlobStore } from '@fedsynth/common/blobstore/index';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';

/** Injection token of the coordinator's content-addressed blob store (a FileBlobStore under `<dataDir>/blobs`). */
export const BLOB_STORE = Symbol.for('fedsynth.coordinator.blob-store');

export function blobStoreDir(config: Pick<CoordinatorConfig, 'dataDir'>): string {
  return path.join(config.dataDir, 'blobs');
}

export const blobStoreProvider: Provider = {
  provide: BLOB_STORE,
  inject: [COORDINATOR_CONFIG],
  useFactory: (config: CoordinatorConfig) => new FileBlobStore(blobStoreDir(config)),
};
