import type { DataSourceOptions } from 'typeorm';
import type { DatabaseConfig } from '../config/coordinator-config.js';
import { ENTITIES } from './entities.js';
import { POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS } from './migrations/index.js';

export const MIGRATIONS_TABLE = 'migrations';

/**
 * TypeORM options for either dialect: the schema comes only from the hand-written migrations, which run at
 * start (`synchronize` is off everywhere).
 */
export function dataSourceOptions(db: DatabaseConfig): DataSourceOptions {
  const common = {
    entities: ENTITIES,
    synchronize: false,
    migrationsRun: true,
    migrationsTableName: MIGRATIONS_TABLE,
    migrationsTransactionMode: 'each',
    logging: false,
  } as const;
  if (db.dialect === 'sqlite') {
    return {
      ...common,
      type: 'better-sqlite3',
      database: db.path,
      migrations: SQLITE_MIGRATIONS,
      // WAL lets `fedsynth admin create-user` write while the coordinator runs; busy_timeout waits for locks.
      enableWAL: db.path !== ':memory:',
      timeout: 5000,
    };
  }
  return {
    ...common,
    type: 'postgres',
    url: db.url,
    migrations: POSTGRES_MIGRATIONS,
    ...(db.schema
      ? {
          // qualified names for TypeORM's own queries, search_path for the migrations' unqualified SQL
          schema: db.schema,
          extra: { options: `-c search_path=${db.schema}` },
        }
      : {}),
  };
}
