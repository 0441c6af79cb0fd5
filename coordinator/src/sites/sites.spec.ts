// Site creation, enrolment (the proof protocol, token single use, concurrency) and revocation, over real HTTP.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { signEnrollmentProof, newSiteKey, type TestSiteKey } from '../testing/enrollment-proof.js';
import { startTestCoordinator, TEST_AUDIENCE, type TestCoordinator } from '../testing/test-coordinator.js';
import { testDialects } from '../testing/test-database.js';
import { type SiteRevokedEvent, SiteEvents } from './site-events.js';
import { hashEnrollmentToken, SitesService } from './sites.service.js';
import { EnrollmentToken } from './enrollment-token.entity.js';
import { DataSource } from 'typeorm';

interface Minted {
  site: { id: string; name: string; status: string };
  enrollmentToken: string;
  expiresAt: string;
}

for (const dialect of testDialects()) {
  describe(`sites and enrolment (${dialect})`, () => {
    let c: TestCoordinator;
    let admin: string;
    let sequence = 0;

    before(async () => {
      c = await startTestCoordinator(dialect);
      admin = await c.tokenFor('admin', 'root');
    });
    after(() => c?.dispose());

    async function mint(name = `site-${++sequence}`): Promise<Minted> {
      const res = await c.request('POST', '/api/sites', { token: admin, body: { name } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body;
    }

    async function proof(
      minted: Minted,
      key: TestSiteKey,
      extra: Partial<Parameters<typeof signEnrollmentProof>[0]> = {},
    ) {
      return signEnrollmentProof({
        key,
        enrollmentToken: minted.enrollmentToken,
        siteId: minted.site.id,
        audience: TEST_AUDIENCE,
        iat: c.clock.nowSeconds(),
        ...extra,
      });
    }

    const enroll = (p: string) => c.request('POST', '/api/sites/enroll', { body: { proof: p } });

    it('creates a pending site with a one-time token of which only the hash is stored', async () => {
      const minted = await mint('karolinska');
      assert.equal(minted.site.status, 'pending');
      assert.match(minted.enrollmentToken, /^fse_[A-Za-z0-9_-]{43}$/);
      assert.equal(Date.parse(minted.expiresAt) - c.clock.now().getTime(), 24 * 3600 * 1000);
      const rows = await c.app
        .get(DataSource)
        .getRepository(EnrollmentToken)
        .findBy({ siteId: minted.site.id });
      assert.equal(rows.length, 1);
      assert.equal(rows[0].tokenHash, hashEnrollmentToken(minted.enrollmentToken));
      const dump = JSON.stringify(await c.app.get(DataSource).query('SELECT * FROM enrollment_tokens'));
      assert.ok(!dump.includes(minted.enrollmentToken), 'the token itself is not stored');
      const list = await c.request('GET', '/api/sites', { token: admin });
      assert.ok(list.body.some((s: { name: string }) => s.name === 'karolinska'));
      assert.ok(!JSON.stringify(list.body).includes(minted.enrollmentToken));
      assert.equal(
        (await c.request('POST', '/api/sites', { token: admin, body: { name: 'karolinska' } })).status,
        409,
      );
      assert.equal(
        (await c.request('POST', '/api/sites', { token: admin, body: { name: '../etc' } })).status,
        400,
      );
    });

    it('enrols a site: the key is registered, the site active, findActiveByKid finds it', async () => {
      const minted = await mint();
      const key = await newSiteKey();
      const enrolled: unknown[] = [];
      const stop = c.app.get(SiteEvents).on('enrolled', (e) => enrolled.push(e));
      const res = await enroll(await proof(minted, key));
      stop();
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.audience, TEST_AUDIENCE);
      assert.equal(res.body.site.status, 'active');
      assert.equal(res.body.site.kid, key.kid);
      assert.deepEqual(res.body.site.publicJwk, { kty: 'OKP', crv: 'Ed25519', x: key.publicJwk.x });
      assert.equal(res.body.site.enrolledAt, c.clock.now().toISOString());
      assert.equal(enrolled.length, 1);
      const found = await c.app.get(SitesService).findActiveByKid(key.kid);
      assert.equal(found?.id, minted.site.id);
      assert.equal(await c.app.get(SitesService).findActiveByKid((await newSiteKey()).kid), null);
    });

    it('refuses to use a token twice', async () => {
      const minted = await mint();
      assert.equal((await enroll(await proof(minted, await newSiteKey()))).status, 200);
      const again = await enroll(await proof(minted, await newSiteKey()));
      assert.equal(again.status, 401);
      assert.match(again.body.message, /already used/);
    });

    it('refuses an expired token', async () => {
      const minted = await mint();
      const late = 24 * 3600 * 1000 + 1000;
      c.clock.advance(late);
      try {
        const res = await enroll(await proof(minted, await newSiteKey()));
        assert.equal(res.status, 401);
        assert.match(res.body.message, /enrollment token expired/);
      } finally {
        c.clock.advance(-late);
      }
    });

    it('refuses a proof for another audience', async () => {
      const minted = await mint();
      const res = await enroll(
        await proof(minted, await newSiteKey(), { audience: 'fedsynth-coordinator:evil:8080' }),
      );
      assert.equal(res.status, 401);
      assert.match(res.body.message, /audience/);
      assert.equal(
        (await enroll(await proof(minted, await newSiteKey()))).status,
        200,
        'the token is still unused',
      );
    });

    it('refuses a proof signed by another key than the embedded one', async () => {
      const minted = await mint();
      const key = await newSiteKey();
      const res = await enroll(
        await proof(minted, key, { signWith: generateKeyPairSync('ed25519').privateKey }),
      );
      assert.equal(res.status, 401);
      assert.match(res.body.message, /signature/);
    });

    it('refuses a proof whose kid is not the thumbprint of its jwk', async () => {
      const minted = await mint();
      const key = await newSiteKey();
      const other = await newSiteKey();
      const res = await enroll(await proof(minted, key, { kid: other.kid }));
      assert.equal(res.status, 401);
      assert.match(res.body.message, /thumbprint/);
    });

    it('refuses stale, long-lived, mis-addressed or malformed proofs', async () => {
      const minted = await mint();
      const key = await newSiteKey();
      const now = c.clock.nowSeconds();
      const cases: [string, Promise<string>, RegExp][] = [
        ['expired', proof(minted, key, { iat: now - 400, exp: now - 100 }), /expired/],
        ['lives too long', proof(minted, key, { iat: now, exp: now + 3600 }), /5 minutes/],
        ['other site', proof(minted, key, { siteId: crypto.randomUUID() }), /unknown enrollment token/],
        [
          'unknown token',
          proof(minted, key, { enrollmentToken: 'fse_' + 'x'.repeat(43) }),
          /unknown enrollment token/,
        ],
        ['private key in header', proof(minted, key, { jwk: { ...key.publicJwk, d: 'AAAA' } }), /./],
      ];
      for (const [label, signed, reason] of cases) {
        const res = await enroll(await signed);
        assert.equal(res.status, 401, label);
        assert.match(res.body.message, reason, label);
      }
      assert.equal((await enroll('not-a-jws')).status, 400);
      assert.equal((await c.request('POST', '/api/sites/enroll', { body: {} })).status, 400);
      assert.equal((await enroll(await proof(minted, key))).status, 200, 'the token survived all of these');
    });

    it('lets exactly one of many concurrent enrolments with one token succeed', async () => {
      const minted = await mint();
      const keys = await Promise.all(Array.from({ length: 8 }, () => newSiteKey()));
      const proofs = await Promise.all(keys.map((k) => proof(minted, k)));
      const results = await Promise.all(proofs.map((p) => enroll(p)));
      const ok = results.filter((r) => r.status === 200);
      assert.equal(ok.length, 1, results.map((r) => `${r.status} ${r.body.message ?? ''}`).join('; '));
      assert.ok(results.every((r) => r.status === 200 || r.status === 401));
      const site = await c.request('GET', `/api/sites/${minted.site.id}`, { token: admin });
      assert.equal(site.body.status, 'active');
      assert.equal(site.body.kid, ok[0].body.site.kid);
      // and the same proof replayed concurrently
      const again = await mint();
      const p = await proof(again, await newSiteKey());
      const replays = await Promise.all(Array.from({ length: 6 }, () => enroll(p)));
      assert.equal(replays.filter((r) => r.status === 200).length, 1);
    });

    it('revokes a site: status, timestamp and an event for the socket gateway, once', async () => {
      const minted = await mint();
      const key = await newSiteKey();
      assert.equal((await enroll(await proof(minted, key))).status, 200);
      const events: SiteRevokedEvent[] = [];
      const stop = c.app.get(SiteEvents).on('revoked', (e) => events.push(e));
      try {
        const researcher = await c.tokenFor('researcher');
        assert.equal(
          (await c.request('POST', `/api/sites/${minted.site.id}/revoke`, { token: researcher })).status,
          403,
        );
        const res = await c.request('POST', `/api/sites/${minted.site.id}/revoke`, { token: admin });
        assert.equal(res.status, 200);
        assert.equal(res.body.status, 'revoked');
        assert.equal(res.body.revokedAt, c.clock.now().toISOString());
        assert.deepEqual(events, [
          { siteId: minted.site.id, name: minted.site.name, kid: key.kid, revokedAt: c.clock.now() },
        ]);
        assert.equal(await c.app.get(SitesService).findActiveByKid(key.kid), null);
        const twice = await c.request('POST', `/api/sites/${minted.site.id}/revoke`, { token: admin });
        assert.equal(twice.status, 200);
        assert.equal(events.length, 1, 'no second event');
      } finally {
        stop();
      }
      assert.equal(
        (await c.request('POST', `/api/sites/${crypto.randomUUID()}/revoke`, { token: admin })).status,
        404,
      );
      assert.equal((await c.request('POST', '/api/sites/not-a-uuid/revoke', { token: admin })).status, 400);
    });

    it('revoking a pending site voids its token', async () => {
      const minted = await mint();
      assert.equal(
        (await c.request('POST', `/api/sites/${minted.site.id}/revoke`, { token: admin })).status,
        200,
      );
      const res = await enroll(await proof(minted, await newSiteKey()));
      assert.equal(res.status, 401);
    });

    it('reissues a token for a pending site and voids the earlier one', async () => {
      const minted = await mint();
      const res = await c.request('POST', `/api/sites/${minted.site.id}/enrollment-token`, { token: admin });
      assert.equal(res.status, 201);
      assert.notEqual(res.body.enrollmentToken, minted.enrollmentToken);
      assert.equal((await enroll(await proof(minted, await newSiteKey()))).status, 401, 'old token void');
      assert.equal((await enroll(await proof(res.body, await newSiteKey()))).status, 200, 'new token works');
      const late = await c.request('POST', `/api/sites/${minted.site.id}/enrollment-token`, { token: admin });
      assert.equal(late.status, 409, 'an active site gets no new token');
    });

    it('refuses a key that another site already registered', async () => {
      const key = await newSiteKey();
      assert.equal((await enroll(await proof(await mint(), key))).status, 200);
      const res = await enroll(await proof(await mint(), key));
      assert.equal(res.status, 401);
      assert.match(res.body.message, /already registered/);
    });
  });
}
