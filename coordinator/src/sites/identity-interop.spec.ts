// The coordinator against the site side of the protocol as common/src/identity implements it: a proof made by
// createEnrollmentProof enrols, and verifySiteAssertion backed by SitesService accepts the enrolled key and
// refuses it once the site is revoked. (The socket gateway will wire exactly this.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  createEnrollmentProof,
  createSiteAssertion,
  generateSiteKeyPair,
  InMemoryReplayCache,
  verifySiteAssertion,
} from '@fedsynth/common/identity/index';
import { startTestCoordinator, TEST_AUDIENCE, type TestCoordinator } from '../testing/test-coordinator.js';
import { SitesService } from './sites.service.js';

describe('interoperability with @fedsynth/common/identity', () => {
  let c: TestCoordinator;
  before(async () => {
    c = await startTestCoordinator('sqlite');
  });
  after(() => c?.dispose());

  it('enrols with createEnrollmentProof, then checks site assertions until the site is revoked', async () => {
    const clock = { now: () => c.clock.now().getTime() };
    const admin = await c.tokenFor('admin');
    const minted = (await c.request('POST', '/api/sites', { token: admin, body: { name: 'uppsala' } })).body;
    const key = await generateSiteKeyPair();
    const proof = await createEnrollmentProof({
      privateKey: key.privateKey,
      publicJwk: key.publicJwk,
      enrollmentToken: minted.enrollmentToken,
      siteId: minted.site.id,
      audience: TEST_AUDIENCE,
      clock,
    });
    const enrolled = await c.request('POST', '/api/sites/enroll', { body: { proof } });
    assert.equal(enrolled.status, 200, JSON.stringify(enrolled.body));
    assert.equal(enrolled.body.site.kid, key.kid);

    const sites = c.app.get(SitesService);
    const replayCache = new InMemoryReplayCache({ clock });
    const verify = async () =>
      verifySiteAssertion(
        await createSiteAssertion({
          privateKey: key.privateKey,
          kid: key.kid,
          siteId: minted.site.id,
          audience: TEST_AUDIENCE,
          clock,
        }),
        {
          audience: TEST_AUDIENCE,
          clock,
          replayCache,
          resolveKey: async (kid) => {
            const site = await sites.findByKid(kid);
            return site?.publicJwk
              ? { siteId: site.id, publicJwk: site.publicJwk, status: site.status }
              : undefined;
          },
        },
      );
    assert.equal((await verify()).siteId, minted.site.id);
    await sites.revoke(minted.site.id);
    await assert.rejects(verify());
  });
});
