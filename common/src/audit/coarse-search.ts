// The coarse stage: every query row against every private row as one blocked float32 matrix product, keeping
// only each query's k best private rows. Private rows are walked in blocks that stay in cache while 4 query rows
// at a time are streamed over them (each private value loaded once serves 4 accumulators).
import {
  AUDIT_CHANNELS,
  maskedPearson,
  pairScore,
  type PreparedPrivates,
  type PreparedQueries,
} from './vectors.js';

/** Best-first list of (row, score) for one query. */
export interface TopK {
  rows: Int32Array;
  scores: Float32Array;
  /** entries filled (≤ k) */
  length: number;
}

function newTopK(k: number): TopK {
  return { rows: new Int32Array(k).fill(-1), scores: new Float32Array(k).fill(-Infinity), length: 0 };
}

function offer(top: TopK, row: number, score: number): void {
  const k = top.rows.length;
  if (top.length === k && score <= top.scores[k - 1]!) return;
  let i = top.length < k ? top.length++ : k - 1;
  while (i > 0 && top.scores[i - 1]! < score) {
    top.scores[i] = top.scores[i - 1]!;
    top.rows[i] = top.rows[i - 1]!;
    i--;
  }
  top.scores[i] = score;
  top.rows[i] = row;
}

/** Private rows per cache block (× 1.5·dim floats: 128 × 1536 × 4 B = 768 KiB at the default coarse size). */
const PRIVATE_BLOCK = 128;

/**
 * For each query row, the k private rows with the largest masked Pearson correlation (see vectors.ts): the three
 * dot products of every pair as one blocked pass, 4 query rows at a time over a cached block of private rows.
 */
export function coarseTopK(queries: PreparedQueries, privates: PreparedPrivates, k: number): TopK[] {
  const queryCount = queries.count;
  const privateCount = privates.count;
  const px = queries.pixels;
  const dim = px * AUDIT_CHANNELS;
  const { centred: qc, mask: qm, n } = queries;
  const { values: pv, sums: ps, squares: pq } = privates;
  const kk = Math.max(1, Math.min(k, privateCount));
  const tops = Array.from({ length: queryCount }, () => newTopK(kk));
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
        offer(tops[q]!, p, maskedPearson(s0, u0, w0, n[q]!));
        offer(tops[q + 1]!, p, maskedPearson(s1, u1, w1, n[q + 1]!));
        offer(tops[q + 2]!, p, maskedPearson(s2, u2, w2, n[q + 2]!));
        offer(tops[q + 3]!, p, maskedPearson(s3, u3, w3, n[q + 3]!));
      }
    }
    for (; q < queryCount; q++) {
      for (let p = p0; p < p1; p++) offer(tops[q]!, p, pairScore(queries, q, privates, p));
    }
  }
  return tops;
}
