// Databases for the coordinator's specs: a temporary SQLite file always, and a fresh schema in the PostgreSQL
// database named by FEDSYNTH_TEST_POSTGRES_URL when that is set (see test/postgres/start-postgres.sh).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export type TestDialect = 'sqlite' | 'postgres';

export const TEST_POSTGRES_URL_ENV = 'FEDSYNTH_TEST_POSTGRES_URL';

/** sqlite always; postgres too when FEDSYNTH_TEST_POSTGRES_URL is set. */
export function testDialects(): TestDialect[] {
  return process.env[TEST_POSTGRES_URL_ENV] ? ['sqlite', 'postgres'] : ['sqlite'];
}

export interface TestDatabase {
  dialect: TestDialect;
  /** the coordinator's `db` setting */
  db: string;
  /** a fresh temporary data directory (key file; the SQLite file lives here too) */
  dataDir: string;
  /** postgres: the schema made for this database */
  schema?: string;
  dispose(): Promise<void>;
}

export async function createTestDatabase(dialect: TestDialect): Promise<TestDatabase> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-coordinator-'));
  const removeDir = () => rm(dataDir, { recursive: true, force: true });
  if (dialect === 'sqlite') {
    return { dialect, db: `sqlite:${path.join(dataDir, 'coordinator.sqlite')}`, dataDir, dispose: removeDir };
  }
  const base = process.env[TEST_POSTGRES_URL_ENV];
  if (!base) throw new Error(`${TEST_POSTGRES_URL_ENV} is not set`);
  const schema = `t_${path
    .basename(dataDir)
    .replace(/[^A-Za-z0-9]/g, '_')
    .toLowerCase()}`;
  await withClient(base, (c) => c.query(`CREATE SCHEMA "${schema}"`));
  const url = new URL(base);
  url.searchParams.set('schema', schema);
  return {
    dialect,
    db: url.toString(),
    dataDir,
    schema,
    dispose: async () => {
      await withClient(base, (c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
      await removeDir();
    },
  };
}

/** Runs `work` with a plain pg client on `url` (postgres only). */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
