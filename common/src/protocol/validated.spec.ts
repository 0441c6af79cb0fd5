// onValidated over a real socket.io server and client on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import { ProtocolError, type Reply } from './errors.js';
import type { ServerToSiteEvents, SiteToServerEvents } from './events.js';
import { RECOMMENDED_MAX_HTTP_BUFFER_SIZE } from './limits.js';
import type { HelloAccepted, SiteHello } from './schemas.js';
import { checkProtocolVersion, onServerEvent, onSiteEvent } from './validated.js';
import { PROTOCOL_VERSION } from './version.js';
import { goodHello } from './protocol-spec-helpers.js';

type SiteSocket = ClientSocket<ServerToSiteEvents, SiteToServerEvents>;

async function coordinator(t: { after(fn: () => Promise<void> | void): void }) {
  const http = createServer();
  const server = new Server<SiteToServerEvents, ServerToSiteEvents>(http, {
    maxHttpBufferSize: RECOMMENDED_MAX_HTTP_BUFFER_SIZE,
  });
  const hellos: SiteHello[] = [];
  const errors: unknown[] = [];
  server.on('connection', (socket) => {
    onSiteEvent(socket, 'site:hello', (hello) => {
      hellos.push(hello);
      return {
        ok: true,
        protocolVersion: PROTOCOL_VERSION,
        siteId: 'site-alpha',
        serverTime: Date.now(),
        heartbeatIntervalMs: 15_000,
      };
    });
    onSiteEvent(
      socket,
      'job:failed',
      (msg) => {
        if (msg.code === 'explode') throw new Error('secret internal detail');
        throw new ProtocolError('unknown_job', `no job ${msg.jobId}`);
      },
      { onError: (err) => errors.push(err) },
    );
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const site: SiteSocket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true });
  t.after(() => {
    site.close();
  });
  await new Promise<void>((resolve) => site.once('connect', () => resolve()));
  return { site, hellos, errors, server };
}

function raw(site: SiteSocket, event: string, payload: unknown): Promise<Reply<object>> {
  return (
    site as unknown as { timeout(ms: number): { emitWithAck(e: string, p: unknown): Promise<Reply<object>> } }
  )
    .timeout(5000)
    .emitWithAck(event, payload);
}

test('a valid hello reaches the handler and the typed ack comes back', async (t) => {
  const { site, hellos } = await coordinator(t);
  const reply: Reply<HelloAccepted> = await site
    .timeout(5000)
    .emitWithAck('site:hello', goodHello as SiteHello);
  assert.equal(reply.ok, true);
  assert.equal(reply.ok && reply.siteId, 'site-alpha');
  assert.deepEqual(hellos, [goodHello]);
});

test('a hello from another protocol version is refused with a clear message, before its schema', async (t) => {
  const { site, hellos } = await coordinator(t);
  // a future hello may have other fields too: it still gets protocol_mismatch, not bad_payload
  const reply = await raw(site, 'site:hello', {
    ...goodHello,
    protocolVersion: PROTOCOL_VERSION + 1,
    newField: 1,
  });
  assert.equal(reply.ok, false);
  assert.equal(!reply.ok && reply.code, 'protocol_mismatch');
  assert.match(
    !reply.ok ? reply.message : '',
    new RegExp(`v${PROTOCOL_VERSION + 1}.*v${PROTOCOL_VERSION}.*upgrade the coordinator`),
  );
  assert.match(checkProtocolVersion({ protocolVersion: 0 })!.message, /upgrade the site agent/);
  assert.equal(hellos.length, 0);
  assert.equal(site.connected, true);
});

test('bad payloads: bad_payload with the issues, the handler never runs, the connection stays', async (t) => {
  const { site, hellos } = await coordinator(t);
  const withCases = { ...goodHello, dataset: { ...goodHello.dataset, caseIds: ['BraTS2021_00000'] } };
  for (const payload of [withCases, 'hello', null, { ...goodHello, capabilities: { cores: 'many' } }]) {
    const reply = await raw(site, 'site:hello', payload);
    assert.equal(reply.ok, false);
    assert.equal(!reply.ok && reply.code, 'bad_payload', JSON.stringify(payload));
    assert.match(!reply.ok ? reply.message : '', /^site:hello: /);
  }
  const reply = await raw(site, 'site:hello', withCases);
  assert.match(!reply.ok ? reply.message : '', /dataset: Unrecognized key/i);
  assert.equal(hellos.length, 0);
  assert.equal(site.connected, true);
  const ok = await raw(site, 'site:hello', goodHello);
  assert.equal(ok.ok, true);
});

test('handler errors: ProtocolError becomes its reply; anything else is "internal" without its details', async (t) => {
  const { site, errors } = await coordinator(t);
  const known = await site.timeout(5000).emitWithAck('job:failed', {
    jobId: 'job-9',
    attempt: 1,
    code: 'x',
    message: 'x',
    retryable: false,
  });
  assert.deepEqual(known, { ok: false, code: 'unknown_job', message: 'no job job-9' });
  const boom = await site.timeout(5000).emitWithAck('job:failed', {
    jobId: 'job-9',
    attempt: 1,
    code: 'explode',
    message: 'x',
    retryable: false,
  });
  assert.equal(boom.ok, false);
  assert.equal(!boom.ok && boom.code, 'internal');
  assert.doesNotMatch(!boom.ok ? boom.message : '', /secret/);
  assert.equal(errors.length, 1);
  assert.equal(site.connected, true);
});

test('the site side validates what the coordinator sends (job:offer)', async (t) => {
  const { site, server } = await coordinator(t);
  const offers: unknown[] = [];
  onServerEvent(site, 'job:offer', (msg) => {
    offers.push(msg.job.id);
    return { ok: true };
  });
  const [socket] = await server.fetchSockets();
  const good = await socket!.timeout(5000).emitWithAck('job:offer', {
    job: {
      id: 'job-1',
      kind: 'sample',
      attempt: 1,
      leaseExpiresAt: Date.now() + 60_000,
      payload: { n: 100 },
    },
  });
  assert.deepEqual(good, { ok: true });
  const bad = await (
    socket as unknown as { timeout(ms: number): { emitWithAck(e: string, p: unknown): Promise<unknown> } }
  )
    .timeout(5000)
    .emitWithAck('job:offer', { job: { id: 'job-2', kind: 'sample' } });
  assert.equal((bad as { code: string }).code, 'bad_payload');
  assert.deepEqual(offers, ['job-1']);
});
