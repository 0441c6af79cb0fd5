import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startTestCoordinator, TEST_PUBLIC_URL } from '../testing/test-coordinator.js';
import { createTestDatabase, testDialects } from '../testing/test-database.js';
import { createUserOffline } from './create-user.js';

for (const dialect of testDialects()) {
  describe(`admin create-user without the server (${dialect})`, () => {
    it('migrates a fresh database, stores the user, and the coordinator then accepts its login', async () => {
      const database = await createTestDatabase(dialect);
      try {
        const config = { db: database.db, dataDir: database.dataDir, publicUrl: TEST_PUBLIC_URL };
        const user = await createUserOffline(config, {
          username: 'Boot.Admin',
          role: 'admin',
          password: 'first admin password',
        });
        assert.equal(user.username, 'boot.admin');
        assert.equal(user.role, 'admin');
        if (dialect === 'sqlite') {
          const file = path.join(database.dataDir, 'coordinator.sqlite');
          assert.equal(statSync(file).mode & 0o777, 0o600, 'the SQLite file is owner-only');
        }
        await assert.rejects(
          createUserOffline(config, {
            username: 'boot.admin',
            role: 'auditor',
            password: 'another password',
          }),
          /already exists/,
        );
        await assert.rejects(
          createUserOffline(config, { username: 'x2', role: 'superuser', password: 'another password' }),
          (e: Error & { getResponse?: () => unknown }) =>
            JSON.stringify(e.getResponse?.()).includes('expected one of'),
        );
        const c = await startTestCoordinator(dialect, { database });
        try {
          const token = await c.login('boot.admin', 'first admin password');
          assert.equal((await c.request('GET', '/api/users', { token })).status, 200);
        } finally {
          await c.dispose();
        }
      } finally {
        await database.dispose();
      }
    });
  });
}
