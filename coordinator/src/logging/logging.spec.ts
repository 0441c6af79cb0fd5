import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { newSiteKey, signEnrollmentProof } from '../testing/enrollment-proof.js';
import {
  type LooseJson,
  startTestCoordinator,
  TEST_AUDIENCE,
  TEST_PASSWORD,
  type TestCoordinator,
} from '../testing/test-coordinator.js';

describe('structured logs', () => {
  let c: TestCoordinator;
  const lines: string[] = [];
  const records = () => lines.map((l) => JSON.parse(l) as LooseJson);

  before(async () => {
    c = await startTestCoordinator('sqlite', { logDestination: { write: (s: string) => lines.push(s) } });
  });
  after(() => c?.dispose());

  it('writes one JSON line per request with a request id, echoed in X-Request-Id', async () => {
    const res = await c.request('GET', '/api/sites');
    const id = res.headers.get('x-request-id');
    assert.ok(id);
    const line = records().find((r) => r.req?.url === '/api/sites');
    assert.ok(line, 'request logged');
    assert.equal(line.req.id, id);
    assert.equal(line.res.statusCode, 401);
    assert.equal(line.service, 'fedsynth-coordinator');
    const given = await c.request('GET', '/api/auth/me', { headers: { 'x-request-id': 'proxy-abc.123' } });
    assert.equal(given.headers.get('x-request-id'), 'proxy-abc.123');
    const forged = await c.request('GET', '/api/auth/me', {
      headers: { 'x-request-id': 'bad id\twith spaces' },
    });
    assert.notEqual(forged.headers.get('x-request-id'), 'bad id\twith spaces');
  });

  it('never writes tokens, passwords or proofs', async () => {
    const token = await c.tokenFor('admin', 'logger-admin');
    await c.request('GET', '/api/sites', { token, headers: { cookie: 'session=s3cret' } });
    const minted = (await c.request('POST', '/api/sites', { token, body: { name: 'logged-site' } })).body;
    const key = await newSiteKey();
    const proof = await signEnrollmentProof({
      key,
      enrollmentToken: minted.enrollmentToken,
      siteId: minted.site.id,
      audience: TEST_AUDIENCE,
      iat: c.clock.nowSeconds(),
    });
    assert.equal((await c.request('POST', '/api/sites/enroll', { body: { proof } })).status, 200);
    assert.equal((await c.request('POST', '/api/sites/enroll', { body: { proof } })).status, 401); // logs a warning
    const all = lines.join('\n');
    for (const secret of [token, minted.enrollmentToken, proof, TEST_PASSWORD, 's3cret']) {
      assert.ok(!all.includes(secret), `a secret leaked into the logs: ${secret.slice(0, 12)}…`);
    }
    const withAuth = records().find((r) => r.req?.url === '/api/sites' && r.req.headers?.authorization);
    assert.equal(withAuth?.req.headers.authorization, '[redacted]');
    assert.ok(
      records().some((r) => r.level === 40 && /enrolment refused: enrollment token already used/.test(r.msg)),
    );
  });
});
