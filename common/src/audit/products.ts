// The three dot products of the masked Pearson (vectors.ts) for every query × private pair, as matrix products:
// num = Q̃·Vᵀ, s1 = M·Sᵀ, s2 = M·Q²ᵀ. Two kernels: tfjs's active native or wasm backend (XNNPACK, SIMD; measured
// 12x faster than the JS loops on the coarse 16² products of a 2-core machine) and blocked JS loops (no tfjs
// backend, or one that is the pure-JS cpu backend). Either way the caller gets plain Float32Arrays, one block of
// private rows at a time (coarseTopK merges its top k across blocks): neither kernel materializes a query block
// against every private row of a large site at once, and the tfjs kernel never holds more than a bounded number
// of private rows as tensors (wasm's heap is ~4 GB; a BraTS-2021 site at 32² coarse is ~4 GB of rows).
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../ml/backend/index.js';
import { AUDIT_CHANNELS, maskedPearson, type PreparedPrivates, type PreparedQueries } from './vectors.js';

/** A private side held by a kernel (the prepared rows, plus whatever the kernel keeps between query blocks). */
export interface KernelPrivates {
  readonly count: number;
  /** the prepared rows: the only full copy (the tfjs kernel's tensors are a bounded subset or transient) */
  readonly source: PreparedPrivates;
  dispose(): void;
}

/**
 * Called once per block of private rows [first, first + count): `scores` holds queries.count × count masked
 * Pearson values, query-major. The array is reused for the next block: copy what you keep.
 */
export type BlockVisitor = (first: number, count: number, scores: Float32Array) => void;

export interface ProductKernel {
  /** 'js' or the tfjs backend's name */
  readonly name: string;
  holdPrivates(privates: PreparedPrivates): KernelPrivates;
  /** masked Pearson of every query row against every held private row, one block of private rows at a time */
  scoreBlocks(queries: PreparedQueries, privates: KernelPrivates, visit: BlockVisitor): void;
  /** the whole queries × privates matrix (small sets, benchmarks): scoreBlocks gathered */
  scores(queries: PreparedQueries, privates: KernelPrivates): Float32Array;
}

/** Default private rows per block handed to a visitor (and per tensor of the tfjs kernel). */
export const DEFAULT_BLOCK_ROWS = 8192;

/** scoreBlocks gathered into one query-major queries × privates matrix. */
function gather(kernel: ProductKernel, queries: PreparedQueries, held: KernelPrivates): Float32Array {
  const m = held.count;
  const out = new Float32Array(queries.count * m);
  kernel.scoreBlocks(queries, held, (first, count, scores) => {
    for (let q = 0; q < queries.count; q++)
      out.set(scores.subarray(q * count, (q + 1) * count), q * m + first);
  });
  return out;
}

/** Private rows per cache block of the JS kernel (× 1.5·dim floats: 768 KiB at 16²). */
const PRIVATE_BLOCK = 128;

/**
 * Blocked float loops over private rows [first, first + count): 4 query rows at a time over a cached block of
 * private rows (each load feeds 4 sums). Writes queries.count × count scores, query-major, into `out`.
 */
function jsScores(
  queries: PreparedQueries,
  privates: PreparedPrivates,
  first: number,
  count: number,
  out: Float32Array,
): void {
  const queryCount = queries.count;
  const px = queries.pixels;
  const dim = px * AUDIT_CHANNELS;
  const { centred: qc, mask: qm, n } = queries;
  const { values: pv, sums: ps, squares: pq } = privates;
  const end = first + count;
  for (let p0 = first; p0 < end; p0 += PRIVATE_BLOCK) {
    const p1 = Math.min(end, p0 + PRIVATE_BLOCK);
    let q = 0;
    for (; q + 3 < queryCount; q += 4) {
      const a0 = q * dim;
      const a1 = a0 + dim;
      const a2 = a1 + dim;
      const a3 = a2 + dim;
      const m0 = q * px;
      const m1 = m0 + px;
      const m2 = m1 + px;
      const m3 = m2 + px;
      for (let p = p0; p < p1; p++) {
        const b = p * dim;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let i = 0; i < dim; i++) {
          const v = pv[b + i]!;
          s0 += qc[a0 + i]! * v;
          s1 += qc[a1 + i]! * v;
          s2 += qc[a2 + i]! * v;
          s3 += qc[a3 + i]! * v;
        }
        const c = p * px;
        let u0 = 0;
        let u1 = 0;
        let u2 = 0;
        let u3 = 0;
        let w0 = 0;
        let w1 = 0;
        let w2 = 0;
        let w3 = 0;
        for (let i = 0; i < px; i++) {
          const s = ps[c + i]!;
          const sq = pq[c + i]!;
          const x0 = qm[m0 + i]!;
          const x1 = qm[m1 + i]!;
          const x2 = qm[m2 + i]!;
          const x3 = qm[m3 + i]!;
          u0 += x0 * s;
          w0 += x0 * sq;
          u1 += x1 * s;
          w1 += x1 * sq;
          u2 += x2 * s;
          w2 += x2 * sq;
          u3 += x3 * s;
          w3 += x3 * sq;
        }
        out[q * count + p - first] = maskedPearson(s0, u0, w0, n[q]!);
        out[(q + 1) * count + p - first] = maskedPearson(s1, u1, w1, n[q + 1]!);
        out[(q + 2) * count + p - first] = maskedPearson(s2, u2, w2, n[q + 2]!);
        out[(q + 3) * count + p - first] = maskedPearson(s3, u3, w3, n[q + 3]!);
      }
    }
    for (; q < queryCount; q++) {
      for (let p = p0; p < p1; p++) {
        let num = 0;
        for (let i = 0, a = q * dim, b = p * dim; i < dim; i++) num += qc[a + i]! * pv[b + i]!;
        let s1 = 0;
        let s2 = 0;
        for (let i = 0, a = q * px, b = p * px; i < px; i++) {
          s1 += qm[a + i]! * ps[b + i]!;
          s2 += qm[a + i]! * pq[b + i]!;
        }
        out[q * count + p - first] = maskedPearson(num, s1, s2, n[q]!);
      }
    }
  }
}

/** The JS loops, DEFAULT_BLOCK_ROWS private rows per visited block. */
export const jsKernel: ProductKernel = {
  name: 'js',
  holdPrivates: (source) => ({ count: source.count, source, dispose: () => undefined }),
  scoreBlocks(queries, held, visit) {
    const rows = Math.min(DEFAULT_BLOCK_ROWS, held.count);
    if (rows === 0) return;
    const out = new Float32Array(queries.count * rows);
    for (let first = 0; first < held.count; first += rows) {
      const count = Math.min(rows, held.count - first);
      jsScores(queries, held.source, first, count, out);
      visit(first, count, out.subarray(0, queries.count * count));
    }
  },
  scores: (queries, held) => gather(jsKernel, queries, held),
};

export interface TfjsKernelOptions {
  /** private rows per tensor (default DEFAULT_BLOCK_ROWS) */
  blockRows?: number;
  /**
   * bytes of private-row tensors kept on the backend between calls (default 512 MiB: every block of a small or
   * mid-sized site); blocks beyond it are uploaded for each call and freed right after their products
   */
  residentBytes?: number;
}

/** A block's rows as tensors: values [count, 4·px], sums and squares [count, px]. */
interface BlockTensors {
  values: tf.Tensor2D;
  sums: tf.Tensor2D;
  squares: tf.Tensor2D;
}

interface TfjsPrivates extends KernelPrivates {
  readonly blocks: Array<{ first: number; count: number; resident?: BlockTensors }>;
}

function blockTensors(source: PreparedPrivates, first: number, count: number): BlockTensors {
  const px = source.pixels;
  const dim = px * AUDIT_CHANNELS;
  return {
    values: tf.tensor2d(source.values.subarray(first * dim, (first + count) * dim), [count, dim]),
    sums: tf.tensor2d(source.sums.subarray(first * px, (first + count) * px), [count, px]),
    squares: tf.tensor2d(source.squares.subarray(first * px, (first + count) * px), [count, px]),
  };
}

function disposeBlock(t: BlockTensors): void {
  t.values.dispose();
  t.sums.dispose();
  t.squares.dispose();
}

/**
 * Matrix products on tfjs's active backend, per block of private rows: num = Q̃·Vᵀ, s1 = M·Sᵀ, s2 = M·Q²ᵀ, then r in
 * JS. Blocks up to `residentBytes` stay as tensors between calls; the others are made from the prepared rows for
 * each call and freed after it, so the backend never holds more than residentBytes + one block of private rows.
 */
export function tfjsKernel(options: TfjsKernelOptions = {}): ProductKernel {
  const blockRows = Math.max(1, Math.floor(options.blockRows ?? DEFAULT_BLOCK_ROWS));
  const residentBytes = options.residentBytes ?? 512 * 2 ** 20;
  const kernel: ProductKernel = {
    name: tf.getBackend(),
    holdPrivates(source): TfjsPrivates {
      const rowBytes = source.pixels * (AUDIT_CHANNELS + 2) * 4;
      const blocks: TfjsPrivates['blocks'] = [];
      let held = 0;
      try {
        for (let first = 0; first < source.count; first += blockRows) {
          const count = Math.min(blockRows, source.count - first);
          const resident = held + count * rowBytes <= residentBytes;
          if (resident) held += count * rowBytes;
          blocks.push({
            first,
            count,
            ...(resident ? { resident: blockTensors(source, first, count) } : {}),
          });
        }
      } catch (error) {
        for (const b of blocks) if (b.resident) disposeBlock(b.resident);
        throw error;
      }
      return {
        count: source.count,
        source,
        blocks,
        dispose: () => {
          for (const b of blocks) {
            if (b.resident) disposeBlock(b.resident);
            delete b.resident;
          }
        },
      };
    },
    scoreBlocks(queries, held, visit) {
      const { blocks, source } = held as TfjsPrivates;
      const qn = queries.count;
      const px = queries.pixels;
      const q = tf.tensor2d(queries.centred.subarray(0, qn * px * AUDIT_CHANNELS), [qn, px * AUDIT_CHANNELS]);
      const mask = tf.tensor2d(queries.mask.subarray(0, qn * px), [qn, px]);
      const out = new Float32Array(qn * Math.min(blockRows, held.count));
      try {
        for (const block of blocks) {
          const m = block.count;
          const t = block.resident ?? blockTensors(source, block.first, m);
          let a: Float32Array;
          let b: Float32Array;
          let c: Float32Array;
          try {
            const [num, s1, s2] = tf.tidy(() => [
              tf.matMul(q, t.values, false, true),
              tf.matMul(mask, t.sums, false, true),
              tf.matMul(mask, t.squares, false, true),
            ]);
            a = num.dataSync() as Float32Array;
            b = s1.dataSync() as Float32Array;
            c = s2.dataSync() as Float32Array;
            num.dispose();
            s1.dispose();
            s2.dispose();
          } finally {
            if (!block.resident) disposeBlock(t);
          }
          for (let i = 0; i < qn; i++) {
            const nq = queries.n[i]!;
            const row = i * m;
            for (let p = 0; p < m; p++)
              out[row + p] = maskedPearson(a[row + p]!, b[row + p]!, c[row + p]!, nq);
          }
          visit(block.first, m, out.subarray(0, qn * m));
        }
      } finally {
        q.dispose();
        mask.dispose();
      }
    },
    scores: (queries, held) => gather(kernel, queries, held),
  };
  return kernel;
}

/** Backends whose matMul beats the JS loops (the pure-JS 'cpu' backend does not). */
const FAST_BACKENDS = new Set(['wasm', 'tensorflow']);

/**
 * The kernel to use: 'js' on request; otherwise tfjs's backend when it is native or wasm. A thread with no tfjs
 * backend yet (the audit worker) selects one quietly (native → wasm); a thread already on another backend (set by
 * its owner, e.g. 'cpu' in a test) is left alone and gets the JS loops.
 */
export async function productKernel(prefer: 'auto' | 'js' = 'auto'): Promise<ProductKernel> {
  if (prefer === 'js') return jsKernel;
  if ((tf.engine() as unknown as { backendName: string | null }).backendName == null) {
    try {
      await selectBackend({ logger: () => undefined });
    } catch {
      return jsKernel;
    }
  }
  return FAST_BACKENDS.has(tf.getBackend()) ? tfjsKernel() : jsKernel;
}
