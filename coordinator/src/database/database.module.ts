import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { dataSourceOptions } from './data-source-options.js';
import { DatabaseHealth } from './database-health.js';
import { TransactionRunner } from './transaction-runner.js';

/** Errors worth waiting for while a PostgreSQL server comes up (e.g. in docker compose). */
const TRANSIENT_CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', '57P03']);

/** The TypeORM connection (either dialect), migrated at start, plus the transaction runner and the DB ping. */
@Global()
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [COORDINATOR_CONFIG],
      useFactory: (config: CoordinatorConfig) => {
        if (config.db.dialect === 'sqlite' && config.db.path !== ':memory:') {
          mkdirSync(path.dirname(config.db.path), { recursive: true, mode: 0o700 });
          // password and token hashes live here: create the file owner-only (SQLite gives -wal/-shm the same mode)
          closeSync(openSync(config.db.path, 'a', 0o600));
        }
        const postgres = config.db.dialect === 'postgres';
        return {
          ...dataSourceOptions(config.db),
          retryAttempts: postgres ? 10 : 1,
          retryDelay: 1000,
          toRetry: (err: { code?: string }) => postgres && TRANSIENT_CONNECT_ERRORS.has(err?.code ?? ''),
        };
      },
    }),
  ],
  providers: [TransactionRunner, DatabaseHealth],
  exports: [TransactionRunner, DatabaseHealth],
})
export class DatabaseModule {}
