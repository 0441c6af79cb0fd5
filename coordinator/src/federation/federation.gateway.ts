import { type BeforeApplicationShutdown, Inject, Logger, type OnModuleDestroy } from '@nestjs/common';
import {
  type OnGatewayConnection,
  type OnGatewayDisconnect,
  type OnGatewayInit,
  WebSocketGateway,
  WebSocketServer,
} from '@nestjs/websockets';
import { isAuthError } from '@fedsynth/common/identity/index';
import {
  type BlobFetch,
  type BlobFetched,
  type Heartbeat,
  type HeartbeatAck,
  type HelloAccepted,
  type OkReply,
  PROTOCOL_VERSION,
  ProtocolError,
  type SiteHello,
  onSiteEvent,
} from '@fedsynth/common/protocol/index';
import { Clock } from '../core/clock.js';
import { JobsService } from '../jobs/jobs.service.js';
import { SiteEvents } from '../sites/site-events.js';
import { SitesService } from '../sites/sites.service.js';
import { CoordinatorTransfers } from './coordinator-transfers.js';
import {
  FEDERATION_MAX_HTTP_BUFFER_SIZE,
  FEDERATION_OPTIONS,
  FEDERATION_SOCKET_PATH,
  type FederationOptions,
} from './federation.options.js';
import { JobDispatcher } from './job-dispatcher.js';
import { SiteAuthenticator } from './site-authenticator.js';
import {
  type FederationServer,
  type SiteConnection,
  SiteConnections,
  type SiteSocket,
} from './site-connections.js';
import { SiteSessionsService } from './site-sessions.service.js';

/** The error a refused handshake ends with: the site's `connect_error` carries `data.code`. */
export function handshakeError(code: string, message: string): Error & { data: { code: string } } {
  return Object.assign(new Error(message), { data: { code } });
}

/**
 * The sites' socket.io endpoint, on the coordinator's HTTP server at `/socket.io` (engine.io refuses messages over
 * 2 MB: transfers go in chunks of ≤ 1 MiB). The handshake must carry a fresh site assertion in `auth.token`
 * (refused with the AuthError code in `connect_error` data otherwise). Every event is validated against the
 * protocol's schema before a handler runs (`bad_payload` otherwise; the connection stays); everything but
 * `site:hello` needs a hello first (`not_ready`). Revoking a site closes its connections at once.
 */
@WebSocketGateway({
  path: FEDERATION_SOCKET_PATH,
  maxHttpBufferSize: FEDERATION_MAX_HTTP_BUFFER_SIZE,
  serveClient: false,
})
export class FederationGateway
  implements
    OnGatewayInit<FederationServer>,
    OnGatewayConnection<SiteSocket>,
    OnGatewayDisconnect<SiteSocket>,
    BeforeApplicationShutdown,
    OnModuleDestroy
{
  private readonly logger = new Logger(FederationGateway.name);
  @WebSocketServer() server!: FederationServer;
  private readonly inflight = new Set<Promise<unknown>>();
  /** sites revoked while this process runs: a handshake verified just before the revocation is still refused */
  private readonly revoked = new Set<string>();
  private unsubscribe?: () => void;
  private closing = false;

  constructor(
    private readonly authenticator: SiteAuthenticator,
    private readonly connections: SiteConnections,
    private readonly sessions: SiteSessionsService,
    private readonly jobs: JobsService,
    private readonly dispatcher: JobDispatcher,
    private readonly transfers: CoordinatorTransfers,
    private readonly sites: SitesService,
    private readonly siteEvents: SiteEvents,
    private readonly clock: Clock,
    @Inject(FEDERATION_OPTIONS) private readonly options: FederationOptions,
  ) {}

  afterInit(server: FederationServer): void {
    server.use((socket, next) => {
      if (this.closing) return next(handshakeError('unavailable', 'the coordinator is shutting down'));
      const token: unknown = socket.handshake.auth?.token;
      this.authenticator.authenticate(token).then(
        (verified) => {
          socket.data = {
            siteId: verified.siteId,
            kid: verified.kid,
            jti: verified.jti,
            connectedAt: this.clock.now(),
          };
          next();
        },
        (error: unknown) => {
          const code = isAuthError(error) ? error.code : 'internal';
          const message = isAuthError(error) ? error.message : 'authentication failed';
          if (!isAuthError(error)) this.logger.error(`handshake: ${String(error)}`);
          this.logger.warn(`refused a site handshake from ${socket.handshake.address}: ${code}: ${message}`);
          next(handshakeError(code, message));
        },
      );
    });
    this.unsubscribe = this.siteEvents.on('revoked', (e) => {
      this.revoked.add(e.siteId);
      this.disconnectSite(e.siteId, 'site revoked');
    });
  }

  handleConnection(socket: SiteSocket): void {
    const siteId = socket.data.siteId;
    if (this.closing || this.revoked.has(siteId)) {
      socket.disconnect(true);
      return;
    }
    const { connection, superseded } = this.connections.add(socket);
    this.register(connection);
    if (superseded) {
      this.logger.warn(
        `site ${siteId} connected again (${socket.id}); closing its older connection ${superseded.id}`,
      );
      superseded.socket.disconnect(true);
    }
    this.logger.log(`site ${siteId} connected (${socket.id} from ${socket.handshake.address})`);
  }

  handleDisconnect(socket: SiteSocket, reason?: string): void {
    const connection = this.connections.remove(socket);
    if (!connection) return;
    const why = reason ?? 'disconnected';
    if (connection.sessionId) {
      this.track(this.sessions.close(connection.sessionId, why)).catch((error: unknown) =>
        this.logger.warn(`closing session ${connection.sessionId}: ${String(error)}`),
      );
    }
    this.logger.log(`site ${connection.siteId} disconnected (${socket.id}): ${why}`);
  }

  /** Closes every connection of a site now. */
  disconnectSite(siteId: string, why: string): number {
    let closed = 0;
    for (const socket of this.server?.sockets.sockets.values() ?? []) {
      if ((socket as SiteSocket).data?.siteId !== siteId) continue;
      socket.disconnect(true);
      closed++;
    }
    if (closed) this.logger.log(`closed ${closed} connection(s) of site ${siteId}: ${why}`);
    return closed;
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
  }

  /** Before the socket server and the database close: drop the sites and let handlers in progress finish. */
  async beforeApplicationShutdown(): Promise<void> {
    this.closing = true;
    for (const c of this.connections.all()) c.socket.disconnect(true);
    const drained = Promise.allSettled([...this.inflight]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      drained,
      new Promise((resolve) => (timer = setTimeout(resolve, this.options.drainTimeoutMs))),
    ]);
    clearTimeout(timer);
  }

  // ------------------------------------------------------------------------------------------ events

  private register(conn: SiteConnection): void {
    const s = conn.socket;
    const siteId = conn.siteId;
    const options = {
      onError: (error: unknown, event: string) =>
        this.logger.error(`${event} from site ${siteId}: ${(error as Error)?.stack ?? String(error)}`),
    };
    const receiver = this.transfers.receiver;
    onSiteEvent(s, 'site:hello', (m) => this.run(conn, false, () => this.hello(conn, m)), options);
    onSiteEvent(s, 'heartbeat', (m) => this.run(conn, true, () => this.heartbeat(conn, m)), options);
    onSiteEvent(
      s,
      'job:accept',
      (m) =>
        this.run(conn, true, async () => ({
          ok: true,
          ...(await this.jobs.accept(siteId, m.jobId, m.attempt)),
        })),
      options,
    );
    onSiteEvent(
      s,
      'job:progress',
      (m) => this.run(conn, true, async () => ({ ok: true, ...(await this.jobs.progress(siteId, m)) })),
      options,
    );
    onSiteEvent(
      s,
      'job:result',
      (m) =>
        this.run(conn, true, async () => {
          await this.jobs.complete(siteId, m);
          setImmediate(() => void this.dispatcher.offerPending(siteId));
          return { ok: true };
        }),
      options,
    );
    onSiteEvent(
      s,
      'job:failed',
      (m) =>
        this.run(conn, true, async () => {
          await this.jobs.fail(siteId, m);
          setImmediate(() => void this.dispatcher.offerPending(siteId));
          return { ok: true };
        }),
      options,
    );
    onSiteEvent(s, 'blob:fetch', (m) => this.run(conn, true, () => this.fetch(conn, m)), options);
    onSiteEvent(
      s,
      'transfer:begin',
      (m) => this.run(conn, true, () => this.transfers.begin(siteId, m)),
      options,
    );
    onSiteEvent(s, 'transfer:chunk', (m) => this.run(conn, true, () => receiver.chunk(siteId, m)), options);
    onSiteEvent(s, 'transfer:status', (m) => this.run(conn, true, () => receiver.status(siteId, m)), options);
    onSiteEvent(s, 'transfer:commit', (m) => this.run(conn, true, () => receiver.commit(siteId, m)), options);
    onSiteEvent(s, 'transfer:abort', (m) => this.run(conn, true, () => receiver.abort(siteId, m)), options);
  }

  /** Gates a handler (shutdown, hello first) and tracks it so that shutdown can wait for it. */
  private run<R>(conn: SiteConnection, needsHello: boolean, handler: () => Promise<R>): Promise<R> {
    if (this.closing) throw new ProtocolError('busy', 'the coordinator is shutting down', true);
    if (needsHello && !conn.ready) throw new ProtocolError('not_ready', 'send site:hello first');
    return this.track(handler());
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inflight.add(promise);
    const forget = () => this.inflight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  private async hello(conn: SiteConnection, msg: SiteHello): Promise<OkReply<HelloAccepted>> {
    const site = await this.sites.findByKid(conn.socket.data.kid);
    if (!site || site.id !== conn.siteId || site.status !== 'active') {
      setImmediate(() => conn.socket.disconnect(true));
      throw new ProtocolError('unauthorized', 'this site is not active');
    }
    // offers made over an earlier connection are void: they are made again over this one
    if (!conn.ready) await this.jobs.withdrawOffers(conn.siteId);
    const session = await this.sessions.hello(
      conn.sessionId,
      {
        siteId: conn.siteId,
        socketId: conn.id,
        connectedAt: conn.socket.data.connectedAt,
        remoteAddress: conn.socket.handshake.address ?? null,
      },
      msg,
    );
    conn.sessionId = session.id;
    if (!conn.socket.connected) {
      await this.sessions.close(session.id, 'disconnected during hello');
      throw new ProtocolError('internal', 'disconnected during hello');
    }
    // After the connected check: accepting a still-queued job for a socket that is already gone would hold it
    // until its lease expires.
    const jobs = msg.inFlight?.length
      ? await this.jobs.reconcile(conn.siteId, msg.inFlight, msg.capabilities.jobKinds)
      : undefined;
    const now = this.clock.now();
    await this.sites.markSeen(conn.siteId, now);
    conn.jobKinds = [...msg.capabilities.jobKinds];
    conn.ready = true;
    setImmediate(() => void this.dispatcher.offerPending(conn.siteId));
    this.logger.log(
      `site ${site.name} (${conn.siteId}) hello: agent ${msg.agentVersion}, ${msg.capabilities.backends.join('/')}, ` +
        `${msg.capabilities.cores} cores, jobs ${msg.capabilities.jobKinds.join(',') || '-'}, ` +
        `${msg.dataset.cases} cases` +
        (msg.inFlight?.length ? `, ${msg.inFlight.length} job(s) in flight` : ''),
    );
    return {
      ok: true,
      protocolVersion: PROTOCOL_VERSION,
      siteId: conn.siteId,
      serverTime: now.getTime(),
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      ...(jobs ? { jobs } : {}),
    };
  }

  private async heartbeat(conn: SiteConnection, msg: Heartbeat): Promise<OkReply<HeartbeatAck>> {
    const now = this.clock.now();
    await this.sites.markSeen(conn.siteId, now);
    const leaseLost = msg.activeJobs.length ? await this.jobs.renewLeases(conn.siteId, msg.activeJobs) : [];
    void this.dispatcher.offerPending(conn.siteId);
    return { ok: true, serverTime: now.getTime(), ...(leaseLost.length ? { leaseLost } : {}) };
  }

  private async fetch(conn: SiteConnection, msg: BlobFetch): Promise<OkReply<BlobFetched>> {
    const input = await this.jobs.inputFor(conn.siteId, msg.jobId, msg.attempt, msg.sha256);
    return { ok: true, ...(await this.transfers.sendToSite(conn.siteId, conn.emitter, input)) };
  }
}
