import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { decodeProtectedHeader, decodeJwt } from 'jose';
import { EnrollmentError, enrollSite, normalizeCoordinatorUrl } from './enroll.js';
import { readSiteState } from './site-state.js';

const SITE = 'b9a3c1de-0000-4000-8000-000000000001';

test('coordinator URLs: http(s) only, no credentials, no trailing slash', () => {
  assert.equal(
    normalizeCoordinatorUrl('https://Coordinator.Example.org/').href,
    'https://coordinator.example.org/',
  );
  assert.equal(
    normalizeCoordinatorUrl('https://c.example.org/fedsynth/?x=1#y').href,
    'https://c.example.org/fedsynth',
  );
  assert.throws(() => normalizeCoordinatorUrl('ftp://c.example.org'), EnrollmentError);
  assert.throws(() => normalizeCoordinatorUrl('https://u:p@c.example.org'), EnrollmentError);
  assert.throws(() => normalizeCoordinatorUrl('c.example.org'), EnrollmentError);
});

test('enrolment posts a proof for the audience derived from the URL and saves the state; a refusal drops the key', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-enroll-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const stateDir = path.join(dir, 'state');
  const posted: Array<{ url: string; proof: string }> = [];
  const refuse = (async (url: string, init: { body: string }) => {
    posted.push({ url, proof: JSON.parse(init.body).proof });
    return new Response(JSON.stringify({ message: 'enrolment refused: unknown enrollment token' }), {
      status: 401,
      headers: { 'content-type': 'application/json' },
    });
  }) as unknown as typeof fetch;
  const base = {
    coordinatorUrl: 'https://c.example.org/',
    siteId: SITE,
    token: 'fse_x',
    dataDir: dir,
    stateDir,
  };
  await assert.rejects(
    enrollSite({ ...base, fetch: refuse }),
    (e: unknown) => e instanceof EnrollmentError && e.status === 401,
  );
  await assert.rejects(
    stat(path.join(stateDir, 'site-key.jwk.json')),
    { code: 'ENOENT' },
    'the refused key is gone',
  );
  assert.equal(posted[0]!.url, 'https://c.example.org/api/sites/enroll');
  const claims = decodeJwt(posted[0]!.proof);
  assert.equal(claims.aud, 'fedsynth-coordinator:c.example.org:443');
  assert.equal(claims.siteId, SITE);
  const header = decodeProtectedHeader(posted[0]!.proof);

  const accept = (async (_url: string, init: { body: string }) => {
    const kid = decodeProtectedHeader(JSON.parse(init.body).proof).kid;
    return new Response(JSON.stringify({ site: { id: SITE, name: 'alpha', kid } }), {
      status: 200,
      headers: { 'content-type': 'application/json' },
    });
  }) as unknown as typeof fetch;
  const state = await enrollSite({ ...base, fetch: accept });
  assert.equal(state.siteName, 'alpha');
  assert.equal(state.audience, 'fedsynth-coordinator:c.example.org:443');
  assert.notEqual(state.kid, header.kid, 'a new key after the refusal');
  assert.deepEqual(await readSiteState(stateDir), state);
  await assert.rejects(enrollSite({ ...base, fetch: accept }), /already holds an enrolled site/);
});
