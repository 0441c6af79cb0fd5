// The coarse stage: every query row against every private row as matrix products (products.ts), keeping only each
// query's k best private rows.
import { jsKernel, type KernelPrivates, type ProductKernel } from './products.js';
import type { PreparedPrivates, PreparedQueries } from './vectors.js';

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

/**
 * Rows a query may not match: query q skips private row p when `rows[p] === queries[q]` (both ≥ 0). The
 * leave-one-subject-out reference uses the subject as the group: a training slice is scored against the other
 * subjects only.
 */
export interface ExcludedGroups {
  /** group of each private row (-1: none) */
  rows: Int32Array;
  /** group of each query row (-1: none) */
  queries: Int32Array;
}

/**
 * For each query row, the k private rows with the largest masked Pearson correlation (see vectors.ts). `privates`
 * is either prepared rows (scored with the JS kernel) or rows already held by `kernel`.
 */
export function coarseTopK(
  queries: PreparedQueries,
  privates: PreparedPrivates | KernelPrivates,
  k: number,
  kernel: ProductKernel = jsKernel,
  exclude?: ExcludedGroups,
): TopK[] {
  const held = 'source' in privates ? privates : kernel.holdPrivates(privates);
  try {
    const kk = Math.max(1, Math.min(k, held.count));
    const tops = Array.from({ length: queries.count }, () => newTopK(kk));
    const groups = exclude?.rows;
    // Block by block (the kernel's tensors for one block are freed before the next): merging each block's rows
    // into the running top k gives the top k over all rows.
    kernel.scoreBlocks(queries, held, (first, count, scores) => {
      for (let q = 0; q < queries.count; q++) {
        const top = tops[q]!;
        const group = exclude ? exclude.queries[q]! : -1;
        const row = q * count;
        if (group < 0) {
          for (let j = 0; j < count; j++) offer(top, first + j, scores[row + j]!);
        } else {
          for (let j = 0; j < count; j++)
            if (groups![first + j] !== group) offer(top, first + j, scores[row + j]!);
        }
      }
    });
    return tops;
  } finally {
    if (held !== privates) held.dispose();
  }
}
