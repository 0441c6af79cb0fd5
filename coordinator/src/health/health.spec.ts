import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { startTestCoordinator } from '../testing/test-coordinator.js';
import { testDialects } from '../testing/test-database.js';
import { COORDINATOR_VERSION } from '../version.js';

for (const dialect of testDialects()) {
  describe(`GET /health (${dialect})`, () => {
    it('reports version, uptime and a database round trip, without a token', async () => {
      const c = await startTestCoordinator(dialect);
      try {
        c.clock.advance(90_000);
        const res = await c.request('GET', '/health');
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('cache-control'), 'no-store');
        assert.equal(res.body.status, 'ok');
        assert.equal(res.body.version, COORDINATOR_VERSION);
        assert.equal(res.body.uptimeSeconds, 90);
        assert.equal(res.body.database.status, 'up');
        assert.equal(res.body.database.dialect, dialect);
        assert.equal(typeof res.body.database.latencyMs, 'number');

        await c.app.get(DataSource).destroy(); // the database goes away
        const down = await c.request('GET', '/health');
        assert.equal(down.status, 503);
        assert.equal(down.body.status, 'degraded');
        assert.equal(down.body.database.status, 'down');
      } finally {
        await c.dispose();
      }
    });
  });
}
