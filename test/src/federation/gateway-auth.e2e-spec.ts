// The coordinator's socket gateway with real sites: enrolment over HTTP, authenticated connections and hello over
// real sockets, every way a handshake is refused (with its code), revocation while connected, and payloads that do
// not match the protocol (answered, connection kept, nothing stored).
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CompactSign } from 'jose';
import { generateSiteKeyPair } from '@fedsynth/common/identity/index';
import { PROTOCOL_VERSION } from '@fedsynth/common/protocol/index';
import { BlobRecord } from '@fedsynth/coordinator/blobs/blob-record.entity';
import { SiteSession } from '@fedsynth/coordinator/federation/site-session.entity';
import { SiteConnections } from '@fedsynth/coordinator/federation/site-connections';
import { Job } from '@fedsynth/coordinator/jobs/job.entity';
import { testDialects } from '@fedsynth/coordinator/testing/test-database';
import { AgentFatalError } from '@fedsynth/site-agent/agent/index';
import {
  type EnrolledSite,
  type Federation,
  ask,
  rawHello,
  startFederation,
  waitFor,
} from './federation-harness.js';

for (const dialect of testDialects()) {
  describe(`federation gateway: enrolment, authentication, validation (${dialect})`, () => {
    let fed: Federation;
    let alpha: EnrolledSite;
    let beta: EnrolledSite;

    before(async () => {
      fed = await startFederation(dialect);
      alpha = await fed.enroll('alpha');
      beta = await fed.enroll('beta');
    });
    after(() => fed?.dispose());

    it('enrols through the agent: key 0600, site.json with the audience computed from the URL', async () => {
      const keyFile = path.join(alpha.stateDir, 'site-key.jwk.json');
      assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
      assert.equal((await stat(path.join(alpha.stateDir, 'site.json'))).mode & 0o777, 0o600);
      const saved = JSON.parse(await readFile(path.join(alpha.stateDir, 'site.json'), 'utf8'));
      assert.equal(saved.siteId, alpha.siteId);
      assert.equal(saved.siteName, 'alpha');
      assert.equal(saved.coordinatorUrl, fed.url);
      assert.equal(saved.audience, `fedsynth-coordinator:127.0.0.1:${fed.port}`);
      assert.equal(saved.audience, fed.coordinator.config.audience);
      assert.equal(saved.kid, alpha.key.kid);
      const site = await fed.coordinator.request('GET', `/api/sites/${alpha.siteId}`, { token: fed.admin });
      assert.equal(site.body.status, 'active');
      assert.equal(site.body.kid, alpha.key.kid);
    });

    it('connects with a fresh assertion, says hello, and the session records capabilities and counts', async () => {
      const agent = await fed.startAgent(alpha);
      await agent.waitReady();
      const sessions = await fed.db().getRepository(SiteSession).findBy({ siteId: alpha.siteId });
      assert.equal(sessions.length, 1);
      assert.deepEqual(sessions[0]!.capabilities.jobKinds, ['echo-upload']);
      assert.deepEqual(sessions[0]!.capabilities.backends, ['wasm']);
      assert.equal(sessions[0]!.dataset.cases, 12);
      assert.equal(sessions[0]!.protocolVersion, PROTOCOL_VERSION);
      assert.equal(sessions[0]!.disconnectedAt, null);
      const site = await fed.coordinator.request('GET', `/api/sites/${alpha.siteId}`, { token: fed.admin });
      assert.equal(site.body.lastSeenAt, fed.clock.now().toISOString());
      const metrics = await fed.coordinator.request('GET', '/metrics');
      assert.match(metrics.body, /^fedsynth_sites_connected 1$/m);

      // the transport drops: the client reconnects by itself with a new assertion (a new jti) and says hello again
      agent.connection!.io.engine.close();
      await waitFor(() => !agent.isReady, 'the drop');
      await agent.waitReady();
      await waitFor(
        async () => (await fed.db().getRepository(SiteSession).countBy({ siteId: alpha.siteId })) === 2,
        'a second session',
      );
      await agent.stop();
      await waitFor(
        async () =>
          (await fed.db().getRepository(SiteSession).findBy({ siteId: alpha.siteId })).every(
            (s) => s.disconnectedAt,
          ),
        'sessions closed',
      );
      assert.equal(fed.app.get(SiteConnections).connectedSiteIds().length, 0);
    });

    it('refuses handshakes with the reason: missing, forged, expired, replayed, wrong audience, other key, unknown', async () => {
      assert.equal((await fed.connectRaw({})).code, 'missing_token');
      assert.equal((await fed.connectRaw({ token: 42 })).code, 'missing_token');
      assert.equal((await fed.connectRaw({ token: 'not.a.jwt' })).code, 'malformed');

      // forged: alpha's kid and claims, signed by another key
      const good = await fed.mint(alpha);
      const [header, payload] = good.split('.');
      const impostor = await generateSiteKeyPair();
      const forged = await new CompactSign(Buffer.from(Buffer.from(payload!, 'base64url')))
        .setProtectedHeader(JSON.parse(Buffer.from(header!, 'base64url').toString()))
        .sign(impostor.privateKey);
      assert.equal((await fed.connectRaw({ token: forged })).code, 'bad_signature');

      // expired: minted 10 minutes ago (lifetime 120 s, tolerance 30 s)
      assert.equal(
        (await fed.connectRaw({ token: await fed.mint(alpha, { clockOffsetMs: -600_000 }) })).code,
        'expired',
      );

      // replayed: the same assertion twice
      const once = await fed.mint(alpha);
      const first = await fed.connectRaw({ token: once });
      assert.ok(first.socket, `first use connects (${first.code})`);
      first.socket!.close();
      assert.equal((await fed.connectRaw({ token: once })).code, 'replayed');

      assert.equal(
        (
          await fed.connectRaw({
            token: await fed.mint(alpha, { audience: 'fedsynth-coordinator:evil.example:443' }),
          })
        ).code,
        'wrong_audience',
      );
      // beta's key claiming to be alpha
      assert.equal(
        (await fed.connectRaw({ token: await fed.mint({ siteId: alpha.siteId, key: beta.key }) })).code,
        'subject_mismatch',
      );
      // a key that never enrolled
      assert.equal(
        (await fed.connectRaw({ token: await fed.mint({ siteId: alpha.siteId, key: impostor }) })).code,
        'unknown_key',
      );
    });

    it('answers payloads that do not match the protocol with bad_payload, keeps the connection, stores nothing', async () => {
      const { socket } = await fed.connectRaw({ token: await fed.mint(beta) });
      assert.ok(socket);
      const sessions = fed.db().getRepository(SiteSession);
      const before = await sessions.countBy({ siteId: beta.siteId });

      // before hello: only hello is accepted
      assert.equal((await ask(socket, 'heartbeat', { seq: 1, sentAt: 1, activeJobs: [] })).code, 'not_ready');
      // a hello with a case id riding along, an unknown job kind, a negative count, another protocol version
      const withCaseIds = rawHello(['echo-upload'], { caseIds: ['BraTS2021_00000'] });
      assert.equal((await ask(socket, 'site:hello', withCaseIds)).code, 'bad_payload');
      assert.equal((await ask(socket, 'site:hello', rawHello(['mine-bitcoin']))).code, 'bad_payload');
      assert.equal(
        (await ask(socket, 'site:hello', { ...rawHello(), dataset: { cases: -1 } })).code,
        'bad_payload',
      );
      assert.equal(
        (await ask(socket, 'site:hello', { ...rawHello(), protocolVersion: 99 })).code,
        'protocol_mismatch',
      );
      assert.equal((await ask(socket, 'site:hello', 'hello', 'there')).code, 'bad_payload');
      assert.equal(await sessions.countBy({ siteId: beta.siteId }), before, 'no session stored');
      assert.ok(socket.connected);

      const ok = await ask(socket, 'site:hello', rawHello());
      assert.equal(ok.ok, true, JSON.stringify(ok));
      assert.equal(ok.siteId, beta.siteId);
      assert.equal(await sessions.countBy({ siteId: beta.siteId }), before + 1);

      const offered = new Promise((resolve) => socket.once('job:offer', resolve)); // never acked, never accepted
      const job = await fed.jobs().enqueue(beta.siteId, 'echo-upload', { bytes: 10 });
      await offered;
      const jobRow = () => fed.db().getRepository(Job).findOneByOrFail({ id: job.id });
      const snapshot = JSON.stringify(await jobRow());
      assert.equal(
        (await ask(socket, 'job:progress', { jobId: job.id, attempt: 1, fraction: 1.5 })).code,
        'bad_payload',
      );
      assert.equal(
        (await ask(socket, 'job:accept', { jobId: '../etc/passwd', attempt: 1 })).code,
        'bad_payload',
      );
      assert.equal((await ask(socket, 'job:accept', { jobId: job.id, attempt: 0 })).code, 'bad_payload');
      assert.equal(
        (
          await ask(socket, 'job:result', {
            jobId: job.id,
            attempt: 1,
            outputs: [{ role: 'x', sha256: 'zz', size: 1 }],
          })
        ).code,
        'bad_payload',
      );
      assert.equal(
        (
          await ask(socket, 'job:progress', {
            jobId: job.id,
            attempt: 1,
            fraction: 0.5,
            metrics: { dice: 'high' },
          })
        ).code,
        'bad_payload',
      );
      assert.equal(
        (await ask(socket, 'heartbeat', { seq: -1, sentAt: 0, activeJobs: [] })).code,
        'bad_payload',
      );
      assert.equal(JSON.stringify(await jobRow()), snapshot, 'the job row did not change');

      // transfers: a huge announcement, a path as transfer id, a chunk that is not binary
      const sha = 'a'.repeat(64);
      const begin = {
        transferId: 'abcdefgh1234',
        kind: 'samples',
        size: 2 ** 41,
        sha256: sha,
        chunkSize: 65536,
        meta: {},
      };
      assert.equal((await ask(socket, 'transfer:begin', begin)).code, 'bad_payload');
      assert.equal(
        (await ask(socket, 'transfer:begin', { ...begin, size: 10, transferId: '../../x' })).code,
        'bad_payload',
      );
      assert.equal(
        (await ask(socket, 'transfer:begin', { ...begin, size: 10, kind: 'global-weights' })).code,
        'declined',
      );
      // uploads belong to a job attempt holding its lease
      assert.equal((await ask(socket, 'transfer:begin', { ...begin, size: 10 })).code, 'declined');
      const forJob = { ...begin, size: 10, meta: { jobId: job.id, attempt: 1 } };
      assert.equal((await ask(socket, 'transfer:begin', forJob)).code, 'lease_lost', 'offered, not accepted');
      assert.equal(
        (await ask(socket, 'transfer:begin', { ...forJob, meta: { jobId: job.id, attempt: 'one' } })).code,
        'bad_payload',
      );
      assert.equal(
        (await ask(socket, 'transfer:chunk', { transferId: 'abcdefgh1234', index: 0, bytes: [1, 2, 3] }))
          .code,
        'bad_payload',
      );
      assert.equal(await fed.db().getRepository(BlobRecord).count(), 0);
      const staging = await readdir(path.join(fed.coordinator.config.dataDir, 'transfers')).catch(() => []);
      assert.deepEqual(staging, []);

      // still connected and served
      assert.ok(socket.connected);
      const beat = await ask(socket, 'heartbeat', { seq: 2, sentAt: Date.now(), activeJobs: [] });
      assert.equal(beat.ok, true);
      await fed.jobs().cancel(job.id, 'test over');
      socket.close();
    });

    it('engine.io refuses a message over 2 MB before buffering it: that connection closes', async () => {
      const { socket } = await fed.connectRaw({ token: await fed.mint(beta) });
      assert.ok(socket);
      const closed = new Promise<string>((resolve) => socket.once('disconnect', resolve));
      const emit = socket.emit.bind(socket) as (event: string, payload: unknown) => void;
      emit('transfer:chunk', { transferId: 'abcdefgh1234', index: 0, bytes: Buffer.alloc(3_000_000) });
      assert.equal(await closed, 'transport close');
    });

    it('revoking a connected site closes its connection at once; the agent stops, and the site is refused after', async () => {
      const gamma = await fed.enroll('gamma');
      const agent = await fed.startAgent(gamma);
      await agent.waitReady();
      const job = await fed.jobs().enqueue(gamma.siteId, 'echo-upload', { bytes: 1 }, { maxAttempts: 1 });
      await waitFor(async () => (await fed.jobs().get(job.id)).state === 'done', 'the job');
      const queued = await fed.jobs().enqueue(gamma.siteId, 'train-round', {});

      const disconnected = new Promise<number>((resolve) => {
        const t0 = performance.now();
        agent.events.once('disconnected', () => resolve(performance.now() - t0));
      });
      const res = await fed.coordinator.request('POST', `/api/sites/${gamma.siteId}/revoke`, {
        token: fed.admin,
      });
      assert.equal(res.status, 200);
      const ms = await disconnected;
      assert.ok(ms < 1000, `disconnected ${ms.toFixed(0)} ms after the revoke call began`);
      await assert.rejects(agent.done, (e: unknown) => e instanceof AgentFatalError && e.code === 'revoked');
      assert.equal((await fed.connectRaw({ token: await fed.mint(gamma) })).code, 'revoked');
      assert.equal(fed.app.get(SiteConnections).forSite(gamma.siteId), undefined);
      const failed = await fed.jobs().get(queued.id);
      assert.equal(failed.state, 'failed');
      assert.equal(failed.error?.code, 'site_revoked');
      assert.equal((await fed.jobs().get(job.id)).state, 'done', 'finished work stays done');
    });
  });
}
