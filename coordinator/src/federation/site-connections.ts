import { Injectable } from '@nestjs/common';
import type { ServerToSiteEvents, SiteToServerEvents } from '@fedsynth/common/protocol/index';
import { type SocketAckEmitter, TransportError } from '@fedsynth/common/transfer/index';
import type { Server, Socket } from 'socket.io';
import { MetricsService } from '../metrics/metrics.service.js';

/** What the handshake middleware learnt, on `socket.data`. */
export interface SiteSocketData {
  siteId: string;
  kid: string;
  jti: string;
  connectedAt: Date;
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- no server-to-server events
type NoEvents = {};
export type FederationServer = Server<SiteToServerEvents, ServerToSiteEvents, NoEvents, SiteSocketData>;
export type SiteSocket = Socket<SiteToServerEvents, ServerToSiteEvents, NoEvents, SiteSocketData>;

/**
 * An AckEmitter over a server-side socket whose timers do not hold the process open. (socket.io's own
 * `socket.timeout(ms).emit` keeps its timer after a disconnect, so an unanswered offer or an interrupted download
 * would keep a stopping coordinator alive for the whole timeout.) Pending acks fail at once on disconnect; the
 * socket's ack table goes with the socket.
 */
export function serverAckEmitter(socket: SiteSocket): SocketAckEmitter {
  const pending = new Set<(error: Error) => void>();
  const onDisconnect = (reason?: unknown) => {
    const error = new TransportError('disconnected', `socket disconnected (${String(reason ?? 'unknown')})`);
    for (const fail of [...pending]) fail(error);
  };
  socket.on('disconnect', onDisconnect);
  return {
    emitWithAck(event, payload, timeoutMs) {
      if (!socket.connected) {
        return Promise.reject(
          new TransportError('disconnected', `cannot send ${event}: socket is not connected`),
        );
      }
      return new Promise((resolve, reject) => {
        const fail = (error: Error) => {
          if (!pending.delete(fail)) return;
          clearTimeout(timer);
          reject(error);
        };
        const timer = setTimeout(
          () => fail(new TransportError('timeout', `${event}: no ack within ${timeoutMs} ms`)),
          timeoutMs,
        );
        timer.unref();
        pending.add(fail);
        (socket.emit as (e: string, p: unknown, ack: (reply: unknown) => void) => boolean)(
          event,
          payload,
          (reply) => {
            if (!pending.delete(fail)) return; // timed out or disconnected already
            clearTimeout(timer);
            resolve(reply);
          },
        );
      });
    },
    dispose() {
      socket.off('disconnect', onDisconnect);
      onDisconnect('disposed');
    },
  };
}

/** One authenticated socket of a site. */
export class SiteConnection {
  readonly emitter: SocketAckEmitter;
  /** set once site:hello was accepted */
  ready = false;
  sessionId?: string;
  /** job kinds the site said it runs */
  jobKinds: readonly string[] = [];

  constructor(readonly socket: SiteSocket) {
    this.emitter = serverAckEmitter(socket);
  }

  get siteId(): string {
    return this.socket.data.siteId;
  }

  get id(): string {
    return this.socket.id;
  }
}

/**
 * The sites connected to this coordinator. One connection per site: a new authenticated connection supersedes the
 * site's older one (after a network drop the old socket may linger until its ping times out), which is closed.
 */
@Injectable()
export class SiteConnections {
  private readonly bySite = new Map<string, SiteConnection>();
  private readonly bySocket = new Map<string, SiteConnection>();

  constructor(private readonly metrics: MetricsService) {}

  /** Registers a new socket; returns it and the connection it supersedes (the caller closes that one). */
  add(socket: SiteSocket): { connection: SiteConnection; superseded?: SiteConnection } {
    const connection = new SiteConnection(socket);
    const superseded = this.bySite.get(connection.siteId);
    this.bySite.set(connection.siteId, connection);
    this.bySocket.set(socket.id, connection);
    this.updateGauge();
    return { connection, superseded };
  }

  /** Forgets a socket; returns its connection (if it was known). */
  remove(socket: SiteSocket): SiteConnection | undefined {
    const connection = this.bySocket.get(socket.id);
    if (!connection) return undefined;
    this.bySocket.delete(socket.id);
    connection.emitter.dispose();
    if (this.bySite.get(connection.siteId) === connection) this.bySite.delete(connection.siteId);
    this.updateGauge();
    return connection;
  }

  forSocket(socket: SiteSocket): SiteConnection | undefined {
    return this.bySocket.get(socket.id);
  }

  /** The site's current connection, whether or not it said hello yet. */
  forSite(siteId: string): SiteConnection | undefined {
    return this.bySite.get(siteId);
  }

  /** The site's current connection once it said hello. */
  readyForSite(siteId: string): SiteConnection | undefined {
    const c = this.bySite.get(siteId);
    return c?.ready && c.socket.connected ? c : undefined;
  }

  /** Every socket (superseded ones included, until they close). */
  all(): SiteConnection[] {
    return [...this.bySocket.values()];
  }

  connectedSiteIds(): string[] {
    return [...this.bySite.keys()];
  }

  private updateGauge(): void {
    this.metrics.sitesConnected.set(this.bySite.size);
  }
}
