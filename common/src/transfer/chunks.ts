// Chunk arithmetic and the set of chunks a receiver holds (a bitset, reported as half-open index ranges).

export function chunkCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

/** Bytes in chunk `index`: chunkSize for all but the last, which holds the rest. */
export function chunkLength(size: number, chunkSize: number, index: number): number {
  return Math.min(chunkSize, size - index * chunkSize);
}

export type ChunkRanges = Array<[number, number]>;

export class ChunkSet {
  private readonly bits: Uint8Array;
  private held = 0;

  constructor(readonly total: number) {
    this.bits = new Uint8Array(Math.ceil(total / 8));
  }

  static fromRanges(total: number, ranges: ChunkRanges): ChunkSet {
    const set = new ChunkSet(total);
    for (const [start, end] of ranges) {
      for (let i = Math.max(0, start); i < Math.min(end, total); i++) set.add(i);
    }
    return set;
  }

  get count(): number {
    return this.held;
  }

  get complete(): boolean {
    return this.held === this.total;
  }

  has(index: number): boolean {
    return index >= 0 && index < this.total && (this.bits[index >> 3]! & (1 << (index & 7))) !== 0;
  }

  /** true when the index was new */
  add(index: number): boolean {
    if (index < 0 || index >= this.total || this.has(index)) return false;
    this.bits[index >> 3]! |= 1 << (index & 7);
    this.held++;
    return true;
  }

  toRanges(): ChunkRanges {
    const out: ChunkRanges = [];
    let start = -1;
    for (let i = 0; i <= this.total; i++) {
      const h = i < this.total && this.has(i);
      if (h && start < 0) start = i;
      if (!h && start >= 0) {
        out.push([start, i]);
        start = -1;
      }
    }
    return out;
  }

  *missing(): Generator<number> {
    for (let i = 0; i < this.total; i++) if (!this.has(i)) yield i;
  }

  /** bytes covered by the held chunks of a transfer of `size` bytes */
  bytes(size: number, chunkSize: number): number {
    const last = this.total - 1;
    if (this.total === 0) return 0;
    return this.has(last)
      ? (this.held - 1) * chunkSize + chunkLength(size, chunkSize, last)
      : this.held * chunkSize;
  }
}
