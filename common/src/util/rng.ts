// Seeded pseudo-random numbers. Hand-written rather than a dependency because it sits in per-voxel hot loops
// (millions of draws per phantom case), where a tiny monomorphic class that V8 inlines matters more than features.
//
// Generator: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit state, passes PractRand), seeded
// through splitmix32 from a 64-bit key derived from a number or a string. `fork(label)` derives a child from the
// key and the label only, never from how many numbers the parent has drawn, so independent parts of a computation
// (sites, cases, volumes) get the same streams whatever order they run in.

export type SeedInput = number | string;

const TWO_POW_32 = 4294967296;

/** murmur3's 32-bit finaliser: a cheap bijective avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A salted 32-bit hash of a string's UTF-16 code units (FNV-1a-like mixing, then fmix32). */
function hashText(text: string, salt: number): number {
  let h = (0x811c9dc5 ^ salt) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  }
  return fmix32(h ^ text.length);
}

/** Two 32-bit words that identify a seed; numbers and strings live in distinct key spaces. */
function keyFromSeed(seed: SeedInput): [number, number] {
  if (typeof seed === 'string') {
    return [hashText(seed, 0x9e3779b9), hashText(seed, 0x7f4a7c15)];
  }
  if (!Number.isFinite(seed)) {
    throw new RangeError(`rng seed must be a finite number or a string, got ${seed}`);
  }
  if (Number.isSafeInteger(seed)) {
    const low = seed >>> 0;
    const high = Math.floor(seed / TWO_POW_32) >>> 0;
    return [fmix32(low ^ 0x6a09e667), fmix32(high ^ 0xbb67ae85 ^ fmix32(low))];
  }
  return keyFromSeed(`number:${seed}`);
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** The second Box–Muller deviate of the last pair, used by the next normal() call when hasSpareNormal. */
  private spareNormal = 0;
  private hasSpareNormal = false;

  private constructor(private readonly key: readonly [number, number]) {
    // splitmix32 expands the 64-bit key into sfc32's four state words.
    let x = (key[0] ^ Math.imul(key[1], 0x9e3779b9)) >>> 0;
    const splitmix = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x ^ key[1];
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.a = splitmix();
    this.b = splitmix();
    this.c = splitmix();
    this.d = 1;
    // The reference implementation discards the first outputs so weak seeds are mixed well.
    for (let i = 0; i < 15; i++) this.uint32();
  }

  static from(seed: SeedInput): Rng {
    return new Rng(keyFromSeed(seed));
  }

  /** An independent stream determined by this stream's seed and `label`, not by its position. */
  fork(label: string | number): Rng {
    const text = String(label);
    return new Rng([
      hashText(text, fmix32(this.key[0] ^ 0x510e527f)),
      hashText(text, fmix32(this.key[1] ^ 0x9b05688c) ^ this.key[0]),
    ]);
  }

  /** A uniform 32-bit unsigned integer. */
  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.uint32() / TWO_POW_32;
  }

  /** Uniform in [min, max). */
  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** A uniform integer in [0, n); n must be a positive integer up to 2^32 (bias below 2^-32 · n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > TWO_POW_32) {
      throw new RangeError(`rng.int(n) needs an integer 1 <= n <= 2^32, got ${n}`);
    }
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** A normal deviate (Box–Muller; the pair's second value is cached for the next call). */
  normal(mean = 0, sd = 1): number {
    if (this.hasSpareNormal) {
      this.hasSpareNormal = false;
      return mean + sd * this.spareNormal;
    }
    // 1 - next() lies in (0, 1], so the logarithm is finite.
    const radius = Math.sqrt(-2 * Math.log(1 - this.next()));
    const angle = 2 * Math.PI * this.next();
    this.spareNormal = radius * Math.sin(angle);
    this.hasSpareNormal = true;
    return mean + sd * radius * Math.cos(angle);
  }
}

/** A seeded stream; equal seeds give equal sequences. */
export function createRng(seed: SeedInput): Rng {
  return Rng.from(seed);
}
