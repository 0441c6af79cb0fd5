// Progress of a transfer, reported by both ends after every chunk.
import type { Clock } from '../identity/clock.js';

export interface TransferProgress {
  transferId: string;
  direction: 'send' | 'receive';
  bytesDone: number;
  bytesTotal: number;
  chunksDone: number;
  chunksTotal: number;
  /** bytes that were already at the receiver when this attempt (sender) or process (receiver) started */
  resumedFromBytes: number;
  /** over this attempt: (bytesDone - resumedFromBytes) / elapsed */
  bytesPerSecond: number;
  elapsedMs: number;
}

export type ProgressCallback = (progress: TransferProgress) => void;

export class RateMeter {
  private readonly started: number;

  constructor(
    private readonly clock: Clock,
    readonly resumedFromBytes: number,
  ) {
    this.started = clock.now();
  }

  snapshot(
    base: Omit<TransferProgress, 'bytesPerSecond' | 'elapsedMs' | 'resumedFromBytes'>,
  ): TransferProgress {
    const elapsedMs = Math.max(0, this.clock.now() - this.started);
    const moved = base.bytesDone - this.resumedFromBytes;
    return {
      ...base,
      resumedFromBytes: this.resumedFromBytes,
      elapsedMs,
      bytesPerSecond: elapsedMs > 0 ? (moved * 1000) / elapsedMs : 0,
    };
  }
}
