// The migrations build the schema on every dialect (synchronize stays off), match the entities, are applied once,
// revert cleanly, and timestamps survive a round trip whatever the process time zone.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { resolveCoordinatorConfig } from '../config/coordinator-config.js';
import { EnrollmentToken } from '../sites/enrollment-token.entity.js';
import { Site } from '../sites/site.entity.js';
import { createTestDatabase, type TestDatabase, testDialects } from '../testing/test-database.js';
import { User } from '../users/user.entity.js';
import { dataSourceOptions, MIGRATIONS_TABLE } from './data-source-options.js';
import { POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS } from './migrations/index.js';

async function open(database: TestDatabase): Promise<DataSource> {
  const config = resolveCoordinatorConfig({ db: database.db, dataDir: database.dataDir });
  return new DataSource(dataSourceOptions(config.db)).initialize();
}

for (const dialect of testDialects()) {
  describe(`database migrations (${dialect})`, () => {
    let database: TestDatabase;
    let ds: DataSource;

    before(async () => {
      database = await createTestDatabase(dialect);
      ds = await open(database);
    });
    after(async () => {
      await ds?.destroy();
      await database?.dispose();
    });

    it('runs the hand-written migrations of its dialect with synchronize off', async () => {
      assert.equal(ds.options.synchronize, false);
      assert.equal(ds.options.migrationsRun, true);
      const expected = dialect === 'sqlite' ? SQLITE_MIGRATIONS : POSTGRES_MIGRATIONS;
      assert.deepEqual(
        ds.migrations.map((m) => m.constructor),
        expected,
      );
      const applied = await ds.query(`SELECT name FROM "${MIGRATIONS_TABLE}" ORDER BY id`);
      assert.deepEqual(
        applied.map((r: { name: string }) => r.name),
        expected.map((m) => m.name),
      );
      assert.equal(await ds.showMigrations(), false, 'no pending migration');
    });

    it('creates every entity table and column with the entity nullability and unique keys', async () => {
      const runner = ds.createQueryRunner();
      try {
        for (const meta of ds.entityMetadatas) {
          const table = await runner.getTable(meta.tablePath);
          assert.ok(table, `table ${meta.tableName} exists`);
          for (const column of meta.columns) {
            const dbColumn = table.findColumnByName(column.databaseName);
            assert.ok(dbColumn, `${meta.tableName}.${column.databaseName} exists`);
            assert.equal(
              dbColumn.isNullable,
              column.isNullable,
              `${meta.tableName}.${column.databaseName} nullability`,
            );
          }
          const dbColumns = table.columns.map((c) => c.name).sort();
          assert.deepEqual(
            dbColumns,
            meta.columns.map((c) => c.databaseName).sort(),
            `${meta.tableName} has no extra column`,
          );
          for (const unique of meta.uniques) {
            const columns = unique.columns
              .map((c) => c.databaseName)
              .sort()
              .join(',');
            const found =
              table.uniques.some((u) => u.columnNames.slice().sort().join(',') === columns) ||
              table.indices.some((i) => i.isUnique && i.columnNames.slice().sort().join(',') === columns);
            assert.ok(found, `${meta.tableName} is unique on (${columns})`);
          }
        }
      } finally {
        await runner.release();
      }
    });

    it('enforces the schema constraints (roles, statuses, foreign keys)', async () => {
      const users = ds.getRepository(User);
      const now = new Date();
      await assert.rejects(
        users.insert({
          id: crypto.randomUUID(),
          username: 'x',
          passwordHash: 'h',
          role: 'root' as never,
          disabled: false,
          createdAt: now,
        }),
      );
      await assert.rejects(
        ds.getRepository(EnrollmentToken).insert({
          id: crypto.randomUUID(),
          tokenHash: 'a'.repeat(64),
          siteId: crypto.randomUUID(),
          createdAt: now,
          expiresAt: now,
          usedAt: null,
        }),
        'foreign key to sites',
      );
      const site = { id: crypto.randomUUID(), name: 'no-key', status: 'active' as const, createdAt: now };
      await assert.rejects(ds.getRepository(Site).insert(site), 'an active site needs a key');
    });

    it('stores timestamps as instants, whatever the process time zone', async () => {
      const savedTz = process.env.TZ;
      process.env.TZ = 'America/Sao_Paulo';
      try {
        const at = new Date('2031-03-04T05:06:07.089Z');
        const id = crypto.randomUUID();
        await ds.getRepository(User).insert({
          id,
          username: `tz-${dialect}`,
          passwordHash: 'h',
          role: 'auditor',
          disabled: false,
          createdAt: at,
        });
        process.env.TZ = 'Asia/Tokyo';
        const back = await ds.getRepository(User).findOneByOrFail({ id });
        assert.equal(back.createdAt.toISOString(), at.toISOString());
        assert.equal(back.disabled, false);
        const later = await ds.getRepository(User).countBy({ id, createdAt: at });
        assert.equal(later, 1, 'equality on a timestamp parameter');
      } finally {
        if (savedTz === undefined) delete process.env.TZ;
        else process.env.TZ = savedTz;
      }
    });

    it('applies nothing again at the next start, and the down migration removes the tables', async () => {
      const second = await open(database);
      try {
        const applied = await second.query(`SELECT name FROM "${MIGRATIONS_TABLE}"`);
        assert.equal(applied.length, second.migrations.length);
        for (let i = 0; i < second.migrations.length; i++) await second.undoLastMigration();
        const runner = second.createQueryRunner();
        try {
          for (const table of ['users', 'sites', 'enrollment_tokens']) {
            assert.equal(
              await runner.hasTable(database.schema ? `${database.schema}.${table}` : table),
              false,
              table,
            );
          }
        } finally {
          await runner.release();
        }
        await second.runMigrations();
        assert.equal(await second.showMigrations(), false);
      } finally {
        await second.destroy();
      }
    });
  });
}
