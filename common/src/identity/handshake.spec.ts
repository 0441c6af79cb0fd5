// Site assertions in a real socket.io handshake: the shape the coordinator's gateway will take. The client's `auth`
// callback mints a fresh assertion for every (re)connect; the server's middleware verifies it and refuses replays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io } from 'socket.io-client';
import { AuthError } from './auth-error.js';
import { InMemoryReplayCache } from './replay-cache.js';
import { createSiteAssertion, verifySiteAssertion } from './site-assertion.js';
import { generateSiteKeyPair } from './site-key.js';

test('handshake: fresh assertion per connect, replay and revocation refused with their codes', async (t) => {
  const key = await generateSiteKeyPair();
  let status = 'active';
  const http = createServer();
  const server = new Server(http, { maxHttpBufferSize: 2_000_000 });
  const replayCache = new InMemoryReplayCache();
  server.use((socket, next) => {
    verifySiteAssertion(socket.handshake.auth?.assertion as string | undefined, {
      audience: 'fedsynth-coordinator',
      resolveKey: async (kid) =>
        kid === key.kid ? { siteId: 'site-alpha', publicJwk: key.publicJwk, status } : undefined,
      replayCache,
    }).then(
      (v) => {
        socket.data.siteId = v.siteId;
        next();
      },
      (err: unknown) => {
        const e = new Error(err instanceof AuthError ? err.message : 'authentication failed') as Error & {
          data?: unknown;
        };
        e.data = { code: err instanceof AuthError ? err.code : 'internal' };
        next(e);
      },
    );
  });
  const seen: string[] = [];
  server.on('connection', (socket) => seen.push(socket.data.siteId as string));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;

  const mint = () =>
    createSiteAssertion({
      privateKey: key.privateKey,
      kid: key.kid,
      siteId: 'site-alpha',
      audience: 'fedsynth-coordinator',
    });
  const connectError = (auth: unknown) =>
    new Promise<string>((resolve, reject) => {
      const c = io(url, {
        transports: ['websocket'],
        reconnection: false,
        forceNew: true,
        auth: auth as never,
      });
      c.once('connect', () => {
        c.close();
        reject(new Error('connected'));
      });
      c.once('connect_error', (err: Error & { data?: { code?: string } }) => {
        c.close();
        resolve(err.data?.code ?? err.message);
      });
    });

  // a fresh assertion on every connect, twice over one client (a reconnect)
  const site = io(url, {
    transports: ['websocket'],
    forceNew: true,
    reconnectionDelay: 10,
    auth: (cb) => void mint().then((assertion) => cb({ assertion })),
  });
  t.after(() => {
    site.close();
  });
  await new Promise<void>((resolve) => site.once('connect', () => resolve()));
  site.io.engine.close(); // drop the transport: the client reconnects with a new assertion
  await new Promise<void>((resolve) => site.once('connect', () => resolve()));
  assert.deepEqual(seen, ['site-alpha', 'site-alpha']);

  const token = await mint();
  const once = io(url, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    auth: { assertion: token },
  });
  await new Promise<void>((resolve) => once.once('connect', () => resolve()));
  once.close();
  assert.equal(await connectError({ assertion: token }), 'replayed');
  assert.equal(await connectError({}), 'missing_token');
  status = 'revoked';
  assert.equal(await connectError({ assertion: await mint() }), 'revoked');
});
