import { EventEmitter } from 'node:events';
import { Injectable } from '@nestjs/common';

export interface SiteRevokedEvent {
  siteId: string;
  name: string;
  /** the key the site used, if it had enrolled: connections authenticated with it must close now */
  kid: string | null;
  revokedAt: Date;
}

export interface SiteEnrolledEvent {
  siteId: string;
  name: string;
  kid: string;
  enrolledAt: Date;
}

export interface SiteEventMap {
  revoked: SiteRevokedEvent;
  enrolled: SiteEnrolledEvent;
}

/**
 * In-process notifications about sites. The socket gateway listens to `revoked` to disconnect a site at once.
 * Listeners run synchronously in `emit`; a throwing listener does not stop the others (it is reported to the
 * `error` handler given to {@link onError}, or rethrown asynchronously when there is none).
 */
@Injectable()
export class SiteEvents {
  private readonly emitter = new EventEmitter();
  private errorHandler?: (error: unknown, event: keyof SiteEventMap) => void;

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof SiteEventMap>(event: K, listener: (payload: SiteEventMap[K]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }

  once<K extends keyof SiteEventMap>(event: K, listener: (payload: SiteEventMap[K]) => void): () => void {
    this.emitter.once(event, listener);
    return () => this.emitter.off(event, listener);
  }

  onError(handler: (error: unknown, event: keyof SiteEventMap) => void): void {
    this.errorHandler = handler;
  }

  emit<K extends keyof SiteEventMap>(event: K, payload: SiteEventMap[K]): void {
    for (const listener of this.emitter.listeners(event) as ((p: SiteEventMap[K]) => void)[]) {
      try {
        listener(payload);
      } catch (error) {
        if (this.errorHandler) this.errorHandler(error, event);
        else
          queueMicrotask(() => {
            throw error;
          });
      }
    }
  }

  listenerCount(event: keyof SiteEventMap): number {
    return this.emitter.listenerCount(event);
  }
}
