// Remembers assertion ids (jti) until the assertion expires, so a captured handshake token cannot be used twice.
// A coordinator with more than one process needs a shared implementation (a DB table with a unique key, Redis
// SET NX PX): the interface is async for that reason.
import { type Clock, systemClock } from './clock.js';

export interface ReplayCache {
  /**
   * Atomically records `key` until `expiresAtSeconds` (epoch seconds). Resolves true when the key was new, false
   * when it was already recorded and has not expired (a replay).
   */
  remember(key: string, expiresAtSeconds: number): Promise<boolean>;
}

export class ReplayCacheFullError extends Error {
  override readonly name = 'ReplayCacheFullError';
}

export interface InMemoryReplayCacheOptions {
  clock?: Clock;
  /**
   * Upper bound on remembered ids. When it is reached even after pruning expired ones, new ids are refused
   * (ReplayCacheFullError) instead of forgetting live ones: forgetting would re-open replays. With 5-minute
   * assertions, 100 000 entries allow 330 handshakes per second, sustained.
   */
  maxEntries?: number;
  /** prune expired entries at most this often (ms); pruning is a full scan */
  pruneIntervalMs?: number;
}

export class InMemoryReplayCache implements ReplayCache {
  private readonly entries = new Map<string, number>();
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private readonly pruneIntervalMs: number;
  private lastPrune = -Infinity;

  constructor(options: InMemoryReplayCacheOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.maxEntries = options.maxEntries ?? 100_000;
    this.pruneIntervalMs = options.pruneIntervalMs ?? 10_000;
  }

  get size(): number {
    return this.entries.size;
  }

  async remember(key: string, expiresAtSeconds: number): Promise<boolean> {
    const nowMs = this.clock.now();
    if (nowMs - this.lastPrune >= this.pruneIntervalMs) this.prune(nowMs);
    const seen = this.entries.get(key);
    if (seen !== undefined && seen * 1000 > nowMs) return false;
    if (seen === undefined && this.entries.size >= this.maxEntries) {
      this.prune(nowMs);
      if (this.entries.size >= this.maxEntries) {
        throw new ReplayCacheFullError(`replay cache holds ${this.entries.size} live ids; refusing new ones`);
      }
    }
    this.entries.set(key, expiresAtSeconds);
    return true;
  }

  /** Drops every id whose assertion has expired. */
  prune(nowMs = this.clock.now()): void {
    this.lastPrune = nowMs;
    for (const [key, exp] of this.entries) {
      if (exp * 1000 <= nowMs) this.entries.delete(key);
    }
  }
}
