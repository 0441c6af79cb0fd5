// The three dot products of the masked Pearson (vectors.ts) for every query × private pair, as matrix products:
// num = Q̃·Vᵀ, s1 = M·Sᵀ, s2 = M·Q²ᵀ. Two kernels: tfjs's active native or wasm backend (XNNPACK, SIMD; measured
// 12x faster than the JS loops on the coarse 16² products of a 2-core machine) and blocked JS loops (no tfjs
// backend, or one that is the pure-JS cpu backend). Either way the caller gets plain Float32Arrays.
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../ml/backend/index.js';
import { AUDIT_CHANNELS, maskedPearson, type PreparedPrivates, type PreparedQueries } from './vectors.js';

/** A private side held by a kernel (tensors stay on the backend between query blocks). */
export interface KernelPrivates {
  readonly count: number;
  readonly source: PreparedPrivates;
  dispose(): void;
}

export interface ProductKernel {
  /** 'js' or the tfjs backend's name */
  readonly name: string;
  holdPrivates(privates: PreparedPrivates): KernelPrivates;
  /** masked Pearson of every query row against every held private row */
  scores(queries: PreparedQueries, privates: KernelPrivates): Float32Array;
}

/** Private rows per cache block of the JS kernel (× 1.5·dim floats: 768 KiB at 16²). */
const PRIVATE_BLOCK = 128;

/** Blocked float loops: 4 query rows at a time over a cached block of private rows (each load feeds 4 sums). */
export const jsKernel: ProductKernel = {
  name: 'js',
  holdPrivates: (source) => ({ count: source.count, source, dispose: () => undefined }),
  scores(queries, held) {
    const privates = held.source;
    const queryCount = queries.count;
    const privateCount = privates.count;
    const px = queries.pixels;
    const dim = px * AUDIT_CHANNELS;
    const { centred: qc, mask: qm, n } = queries;
    const { values: pv, sums: ps, squares: pq } = privates;
    const out = new Float32Array(queryCount * privateCount);
    for (let p0 = 0; p0 < privateCount; p0 += PRIVATE_BLOCK) {
      const p1 = Math.min(privateCount, p0 + PRIVATE_BLOCK);
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
          out[q * privateCount + p] = maskedPearson(s0, u0, w0, n[q]!);
          out[(q + 1) * privateCount + p] = maskedPearson(s1, u1, w1, n[q + 1]!);
          out[(q + 2) * privateCount + p] = maskedPearson(s2, u2, w2, n[q + 2]!);
          out[(q + 3) * privateCount + p] = maskedPearson(s3, u3, w3, n[q + 3]!);
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
          out[q * privateCount + p] = maskedPearson(num, s1, s2, n[q]!);
        }
      }
    }
    return out;
  },
};

/** Matrix products on tfjs's active backend: num = Q̃·Vᵀ and [s1 | s2] = M·[S; Q²]ᵀ, then r in JS. */
export function tfjsKernel(): ProductKernel {
  return {
    name: tf.getBackend(),
    holdPrivates(source) {
      const dim = source.pixels * AUDIT_CHANNELS;
      const values = tf.tensor2d(source.values, [source.count, dim]);
      const stacked = new Float32Array(2 * source.count * source.pixels);
      stacked.set(source.sums.subarray(0, source.count * source.pixels));
      stacked.set(source.squares.subarray(0, source.count * source.pixels), source.count * source.pixels);
      const moments = tf.tensor2d(stacked, [2 * source.count, source.pixels]);
      return {
        count: source.count,
        source,
        values,
        moments,
        dispose: () => {
          values.dispose();
          moments.dispose();
        },
      } as KernelPrivates & { values: tf.Tensor2D; moments: tf.Tensor2D };
    },
    scores(queries, held) {
      const { values, moments } = held as KernelPrivates & { values: tf.Tensor2D; moments: tf.Tensor2D };
      const m = held.count;
      const qn = queries.count;
      const px = queries.pixels;
      const [num, mom] = tf.tidy(() => {
        const q = tf.tensor2d(queries.centred.subarray(0, qn * px * AUDIT_CHANNELS), [
          qn,
          px * AUDIT_CHANNELS,
        ]);
        const mask = tf.tensor2d(queries.mask.subarray(0, qn * px), [qn, px]);
        return [tf.matMul(q, values, false, true), tf.matMul(mask, moments, false, true)];
      });
      const a = num.dataSync() as Float32Array;
      const b = mom.dataSync() as Float32Array;
      num.dispose();
      mom.dispose();
      const out = new Float32Array(qn * m);
      for (let q = 0; q < qn; q++) {
        const nq = queries.n[q]!;
        const row = q * m;
        const mrow = q * 2 * m;
        for (let p = 0; p < m; p++)
          out[row + p] = maskedPearson(a[row + p]!, b[mrow + p]!, b[mrow + m + p]!, nq);
      }
      return out;
    },
  };
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
