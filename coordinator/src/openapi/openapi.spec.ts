import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestCoordinator, type TestCoordinator } from '../testing/test-coordinator.js';

describe('OpenAPI', () => {
  let c: TestCoordinator;
  before(async () => {
    c = await startTestCoordinator('sqlite');
  });
  after(() => c?.dispose());

  it('lists the routes at /api/docs-json, with bearer auth on the protected ones', async () => {
    const res = await c.request('GET', '/api/docs-json');
    assert.equal(res.status, 200);
    const doc = res.body;
    assert.match(doc.openapi, /^3\./);
    assert.equal(doc.info.title, 'fedsynth coordinator');
    const routes = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    for (const route of [
      'GET /health',
      'POST /api/auth/login',
      'GET /api/auth/me',
      'GET /api/users',
      'POST /api/users',
      'POST /api/users/{id}/disable',
      'POST /api/users/{id}/enable',
      'POST /api/sites',
      'GET /api/sites',
      'GET /api/sites/{id}',
      'POST /api/sites/{id}/revoke',
      'POST /api/sites/{id}/enrollment-token',
      'POST /api/sites/enroll',
    ]) {
      assert.ok(routes.includes(route), `${route} is documented`);
    }
    assert.ok(doc.components.securitySchemes.bearer, 'bearer scheme');
    assert.ok(doc.paths['/api/sites'].post.security?.length, 'POST /api/sites needs a token');
    assert.equal(doc.paths['/api/sites/enroll'].post.security, undefined, 'enrol is public');
    const enrollBody = doc.paths['/api/sites/enroll'].post.requestBody.content['application/json'].schema;
    assert.deepEqual(enrollBody.required, ['proof']);
  });

  it('serves the Swagger UI at /api/docs', async () => {
    const res = await c.request('GET', '/api/docs');
    assert.equal(res.status, 200);
    assert.match(res.body, /swagger-ui/);
  });
});
