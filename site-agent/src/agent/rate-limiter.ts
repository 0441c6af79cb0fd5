// An upload rate limit (hospital uplinks are shared): a token bucket in bytes, applied to transfer chunks.
import { type AckEmitter } from '@fedsynth/common/transfer/index';

export interface RateClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realRateClock: RateClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** Bytes per second with a burst of `burstBytes` (default a quarter second's worth); waiters are served in order. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly bytesPerSecond: number,
    readonly burstBytes = Math.max(1, Math.floor(bytesPerSecond / 4)),
    private readonly clock: RateClock = realRateClock,
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError('bytesPerSecond must be > 0');
    this.tokens = burstBytes;
    this.last = clock.now();
  }

  /** Resolves once `bytes` may be sent. A request larger than the burst waits for a full bucket, then overdraws. */
  take(bytes: number): Promise<void> {
    const turn = this.queue.then(async () => {
      this.refill();
      const need = Math.min(bytes, this.burstBytes);
      if (this.tokens < need) {
        await this.clock.sleep(((need - this.tokens) / this.bytesPerSecond) * 1000);
        this.refill();
      }
      this.tokens -= bytes;
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
    this.last = now;
  }
}

/** Waits for the bucket before each `transfer:chunk`; other events pass at once. */
export function rateLimitedEmitter(inner: AckEmitter, bucket: TokenBucket): AckEmitter {
  return {
    async emitWithAck(event, payload, timeoutMs) {
      if (event === 'transfer:chunk') {
        const bytes = (payload as { bytes?: { byteLength?: number } }).bytes?.byteLength ?? 0;
        await bucket.take(bytes);
      }
      return inner.emitWithAck(event, payload, timeoutMs);
    },
  };
}

/** `2MB`, `512KiB`, `1.5MiB/s`, `100000` (bytes per second) → bytes per second. */
export function parseByteRate(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*(?:\/s)?\s*$/i.exec(text);
  if (!m) throw new RangeError(`not a byte rate: ${text} (e.g. 2MB, 512KiB, 100000)`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const base = unit.includes('i') ? 1024 : 1000;
  const power = { b: 0, k: 1, m: 2, g: 3 }[unit[0] as 'b' | 'k' | 'm' | 'g'];
  const value = Number(m[1]) * base ** power;
  if (!(value >= 1)) throw new RangeError(`byte rate must be at least 1 byte/s: ${text}`);
  return Math.floor(value);
}
