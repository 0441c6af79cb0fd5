// The memorization audit (DESIGN.md step 6) on one site: every candidate's maximum Pearson correlation against the
// site's private training slices and their left-right mirrors, coarse to fine:
//   1. coarse: candidates and private slices area-averaged to 16² (32² from 128² up), four image channels, masked
//      to the candidate's foreground and normalized once (vectors.ts); one blocked float32 matrix product per block of candidates keeps the top k;
//   2. exact: those k re-scored at full resolution, with a small shift search (hill climbing over whole-pixel
//      shifts of the candidate, up to maxShift): a copy moved by a few pixels is still a copy.
// The site's reference is the same score for each of its held-out test slices (an unseen real slice of another
// subject): the threshold is a high quantile of that plus a margin (see auditThreshold).
import { SliceStoreReader } from '../slices/slice-store.js';
import { coarseTopK } from './coarse-search.js';
import {
  allocPrivates,
  allocQueries,
  AUDIT_CHANNELS,
  defaultCoarseSize,
  imageOf,
  pairScore,
  preparePrivate,
  prepareQuery,
  type PreparedPrivates,
  type PreparedQueries,
  centringShift,
  foregroundCentroid,
  type SliceGeometry,
} from './vectors.js';

export interface AuditSettings {
  /** added to the reference quantile to make the threshold */
  margin: number;
  /** quantile of the train→held-out maxima the margin is added to (default 0.99) */
  quantile?: number;
  /** coarse matches re-checked at full resolution (default 10) */
  topK?: number;
  /** coarse side (default 16, 32 from 128² slices up); must divide the slice size */
  coarseSize?: number;
  /** largest shift in pixels (each axis) searched in the exact stage (default size/16: 4 px at 64²); 0 = none */
  maxShift?: number;
  /** candidates per coarse block (default 256) */
  blockSize?: number;
}

export interface AuditProgress {
  stage: 'load' | 'reference' | 'candidates';
  done: number;
  total: number;
}

export interface AuditRunOptions extends AuditSettings {
  /** slice store of candidate (synthetic) slices */
  candidates: string;
  /** the site's private slice store: its 'train' slices are searched, its 'test' slices make the reference */
  privateStore: string;
  onProgress?: (progress: AuditProgress) => void;
  signal?: AbortSignal;
}

/** A query's best private match: store index of the private slice, orientation and the candidate's shift. */
export interface AuditMatch {
  score: number;
  privateIndex: number;
  mirrored: boolean;
  dx: number;
  dy: number;
}

export interface AuditResult {
  scores: number[];
  /** per candidate: its nearest private slice (stays on the site: for the local review page only) */
  matches: AuditMatch[];
  reference: number[];
  threshold: number;
  flagged: number[];
  settings: Required<AuditSettings>;
  size: number;
  privateTrainSlices: number;
  privateTestSlices: number;
  /** candidate × private pairs scored (mirrors counted) and the time it took, reference included */
  pairs: number;
  seconds: number;
}

export class AuditInputError extends Error {
  override readonly name = 'AuditInputError';
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

/** Linear-interpolated quantile of unsorted values. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error('quantile of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const pos = Math.min(1, Math.max(0, q)) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (pos - lo) * (sorted[hi]! - sorted[lo]!);
}

/**
 * The withholding threshold: the `q` quantile (default 0.99) of the site's train→held-out maxima plus `margin`.
 * A high quantile rather than the maximum: one held-out slice that happens to resemble a training slice (a
 * near-identical anatomy, a blank-ish edge slice) would otherwise set the bar for everything; the margin then
 * buys the remaining false-flag headroom. With fewer than 100 held-out slices the 0.99 quantile is close to the
 * maximum anyway.
 */
export function auditThreshold(reference: readonly number[], margin: number, q = 0.99): number {
  return quantile(reference, q) + margin;
}

export function resolveSettings(size: number, settings: AuditSettings): Required<AuditSettings> {
  const coarseSize = settings.coarseSize ?? defaultCoarseSize(size);
  if (!(Number.isInteger(coarseSize) && coarseSize >= 1 && size % coarseSize === 0)) {
    throw new RangeError(`coarse size ${coarseSize} does not divide the slice size ${size}`);
  }
  if (!(settings.margin >= 0 && settings.margin <= 1)) throw new RangeError(`margin must be in [0, 1]`);
  return {
    margin: settings.margin,
    quantile: settings.quantile ?? 0.99,
    topK: Math.max(1, settings.topK ?? 10),
    coarseSize,
    maxShift: Math.max(0, settings.maxShift ?? Math.max(1, Math.round(size / 16))),
    blockSize: Math.max(4, settings.blockSize ?? 256),
  };
}

/** Bytes of full-resolution slices the exact stage holds at once (bounds memory at 256²). */
const EXACT_BYTES = 64 * 2 ** 20;

/** The site's training slices in the form the search needs: coarse rows (originals, then mirrors) in memory. */
export class PrivateIndex {
  private constructor(
    readonly reader: SliceStoreReader,
    readonly geometry: SliceGeometry,
    /** store indices of the training slices; coarse row r is train[r] (r < n) or its mirror (r ≥ n) */
    readonly train: number[],
    readonly coarse: PreparedPrivates,
    readonly factor: number,
  ) {}

  static async build(
    reader: SliceStoreReader,
    train: number[],
    coarseSize: number,
    onProgress?: (done: number, total: number) => void,
  ): Promise<PrivateIndex> {
    const geometry = { size: reader.meta.size, channels: reader.meta.channels.length };
    const factor = geometry.size / coarseSize;
    const pixels = coarseSize * coarseSize;
    const n = train.length;
    const coarse = allocPrivates(pixels, 2 * n);
    const img = new Float32Array(pixels * AUDIT_CHANNELS);
    const chunk = Math.max(1, Math.floor(EXACT_BYTES / reader.meta.sliceBytes));
    for (let i = 0; i < n; i += chunk) {
      const ids = train.slice(i, i + chunk);
      const data = await reader.readIndices(ids);
      for (let k = 0; k < ids.length; k++) {
        // Coarse rows are centred on their foreground centroid: the coarse search is blind to shifts.
        const [dx, dy] = centringShift(data, k, geometry);
        const [mx, my] = centringShift(data, k, geometry, true);
        preparePrivate(
          imageOf(data, k, geometry, { factor, dx, dy }, img),
          pixels,
          coarse.values,
          coarse.sums,
          coarse.squares,
          i + k,
        );
        preparePrivate(
          imageOf(data, k, geometry, { factor, mirror: true, dx: mx, dy: my }, img),
          pixels,
          coarse.values,
          coarse.sums,
          coarse.squares,
          n + i + k,
        );
      }
      onProgress?.(Math.min(n, i + chunk), n);
    }
    return new PrivateIndex(reader, geometry, train, coarse, factor);
  }
}

/** Hill climbing on whole-pixel shifts: move to the best of the 8 neighbours (within ±maxShift) while it improves. */
function climb(
  x0: number,
  y0: number,
  maxShift: number,
  score: (dx: number, dy: number) => number,
): { score: number; dx: number; dy: number } {
  let dx = x0;
  let dy = y0;
  let best = score(dx, dy);
  for (let moved = maxShift > 0; moved;) {
    moved = false;
    let bx = dx;
    let by = dy;
    for (let ey = -1; ey <= 1; ey++) {
      for (let ex = -1; ex <= 1; ex++) {
        const nx = dx + ex;
        const ny = dy + ey;
        if ((ex === 0 && ey === 0) || Math.abs(nx) > maxShift || Math.abs(ny) > maxShift) continue;
        const s = score(nx, ny);
        if (s > best + 1e-7) {
          best = s;
          bx = nx;
          by = ny;
          moved = true;
        }
      }
    }
    dx = bx;
    dy = by;
  }
  return { score: best, dx, dy };
}

/** Starting points refined by hill climbing in the exact stage. */
const CLIMBS = 3;

const NO_MATCH: AuditMatch = { score: 0, privateIndex: -1, mirrored: false, dx: 0, dy: 0 };

/** Scores `count` NHWC query slices (same size as the private store) against the private index: best match each. */
export async function scoreQueries(
  data: Uint8Array,
  count: number,
  queryGeometry: SliceGeometry,
  index: PrivateIndex,
  settings: Required<AuditSettings>,
): Promise<AuditMatch[]> {
  const { topK, maxShift } = settings;
  const n = index.train.length;
  if (n === 0) return Array.from({ length: count }, () => ({ ...NO_MATCH }));
  const factor = index.factor;
  const coarsePixels = index.coarse.pixels;
  const queries = allocQueries(coarsePixels, count);
  const cimg = new Float32Array(coarsePixels * AUDIT_CHANNELS);
  for (let k = 0; k < count; k++) {
    const [dx, dy] = centringShift(data, k, queryGeometry);
    imageOf(data, k, queryGeometry, { factor, dx, dy }, cimg);
    queries.n[k] = prepareQuery(cimg, coarsePixels, queries.centred, queries.mask, k);
  }
  const tops = coarseTopK(queries, index.coarse, topK);

  const { size } = queryGeometry;
  const pixels = size * size;
  const out: AuditMatch[] = [];
  // Exact stage in sub-blocks whose distinct private slices fit in EXACT_BYTES.
  const perQuery = Math.max(1, tops[0]?.length ?? 1) * index.reader.meta.sliceBytes;
  const sub = Math.max(1, Math.floor(EXACT_BYTES / perQuery));
  const img = new Float32Array(pixels * AUDIT_CHANNELS);
  for (let s0 = 0; s0 < count; s0 += sub) {
    const s1 = Math.min(count, s0 + sub);
    const storeIds = [
      ...new Set(
        tops.slice(s0, s1).flatMap((t) => [...t.rows.subarray(0, t.length)].map((r) => index.train[r % n]!)),
      ),
    ];
    const slices = await index.reader.readIndices(storeIds);
    const where = new Map(storeIds.map((id, k) => [id, k] as const));
    for (let qi = s0; qi < s1; qi++) {
      const shifted = new Map<number, PreparedQueries>();
      const queryAt = (dx: number, dy: number): PreparedQueries => {
        const key = (dy + 1024) * 2048 + dx + 1024;
        let q = shifted.get(key);
        if (!q) {
          q = allocQueries(pixels, 1);
          q.n[0] = prepareQuery(
            imageOf(data, qi, queryGeometry, { dx, dy }, img),
            pixels,
            q.centred,
            q.mask,
            0,
          );
          shifted.set(key, q);
        }
        return q;
      };
      // Each of the top k at full resolution from two starts: no shift, and the shift that lines up the foreground
      // centroids; then hill climbing over whole-pixel shifts (±maxShift) from the CLIMBS best starting points.
      const [qx, qy] = foregroundCentroid(data, qi, queryGeometry);
      const clamp = (v: number) => Math.max(-maxShift, Math.min(maxShift, Math.round(v)));
      const top = tops[qi]!;
      const privs: PreparedPrivates[] = [];
      const starts: Array<{ t: number; dx: number; dy: number; score: number }> = [];
      for (let t = 0; t < top.length; t++) {
        const row = top.rows[t]!;
        const slot = where.get(index.train[row % n]!)!;
        const priv = allocPrivates(pixels, 1);
        imageOf(slices, slot, index.geometry, { mirror: row >= n }, img);
        preparePrivate(img, pixels, priv.values, priv.sums, priv.squares, 0);
        privs.push(priv);
        starts.push({ t, dx: 0, dy: 0, score: pairScore(queryAt(0, 0), 0, priv, 0) });
        const [px, py] = foregroundCentroid(slices, slot, index.geometry, row >= n);
        const [ax, ay] = [clamp(px - qx), clamp(py - qy)];
        if (ax !== 0 || ay !== 0)
          starts.push({ t, dx: ax, dy: ay, score: pairScore(queryAt(ax, ay), 0, priv, 0) });
      }
      starts.sort((x, y) => y.score - x.score);
      let best: AuditMatch = { ...NO_MATCH, score: -Infinity };
      for (const [i, start] of starts.entries()) {
        const end =
          i < CLIMBS
            ? climb(start.dx, start.dy, maxShift, (x, y) => pairScore(queryAt(x, y), 0, privs[start.t]!, 0))
            : start;
        if (end.score > best.score) {
          const row = top.rows[start.t]!;
          best = {
            score: end.score,
            privateIndex: index.train[row % n]!,
            mirrored: row >= n,
            dx: end.dx,
            dy: end.dy,
          };
        }
      }
      out.push(best.score === -Infinity ? { ...NO_MATCH } : best);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return out;
}

function checkStores(candidates: SliceStoreReader, privateStore: SliceStoreReader): void {
  for (const store of [candidates, privateStore]) {
    if (store.meta.channels.length < AUDIT_CHANNELS) {
      throw new AuditInputError(
        store.file,
        `has ${store.meta.channels.length} channels; the audit needs the 4 image channels`,
      );
    }
  }
  const expected = ['t1', 't2', 'flair', 't1ce'];
  for (const store of [candidates, privateStore]) {
    const first = store.meta.channels.slice(0, 4);
    if (first.join() !== expected.join()) {
      throw new AuditInputError(
        store.file,
        `channels [${first.join(', ')}] are not [${expected.join(', ')}]`,
      );
    }
  }
  if (candidates.meta.size !== privateStore.meta.size) {
    throw new AuditInputError(
      candidates.file,
      `candidate slices are ${candidates.meta.size}² but the private slices (${privateStore.file}) are ${privateStore.meta.size}²`,
    );
  }
}

/** The whole audit on one site: reference from the held-out slices, then every candidate. */
export async function runAudit(options: AuditRunOptions): Promise<AuditResult> {
  const started = performance.now();
  const candidates = await SliceStoreReader.open(options.candidates);
  try {
    const privateStore = await SliceStoreReader.open(options.privateStore);
    try {
      checkStores(candidates, privateStore);
      const settings = resolveSettings(privateStore.meta.size, options);
      const train = privateStore.indicesOf('train');
      const test = privateStore.indicesOf('test');
      if (train.length === 0)
        throw new AuditInputError(privateStore.file, 'has no training slices to audit against');
      if (test.length === 0) {
        throw new AuditInputError(
          privateStore.file,
          'has no held-out test slices: the audit needs them for its reference',
        );
      }
      const report = options.onProgress ?? (() => undefined);
      const index = await PrivateIndex.build(privateStore, train, settings.coarseSize, (done, total) =>
        report({ stage: 'load', done, total }),
      );
      const privateGeometry = index.geometry;
      const reference: number[] = [];
      for (let i = 0; i < test.length; i += settings.blockSize) {
        options.signal?.throwIfAborted();
        const ids = test.slice(i, i + settings.blockSize);
        const matches = await scoreQueries(
          await privateStore.readIndices(ids),
          ids.length,
          privateGeometry,
          index,
          settings,
        );
        reference.push(...matches.map((m) => m.score));
        report({ stage: 'reference', done: reference.length, total: test.length });
      }
      const threshold = auditThreshold(reference, settings.margin, settings.quantile);
      const candidateGeometry = { size: candidates.meta.size, channels: candidates.meta.channels.length };
      const matches: AuditMatch[] = [];
      for (let i = 0; i < candidates.count; i += settings.blockSize) {
        options.signal?.throwIfAborted();
        const n = Math.min(settings.blockSize, candidates.count - i);
        matches.push(
          ...(await scoreQueries(await candidates.readRange(i, n), n, candidateGeometry, index, settings)),
        );
        report({ stage: 'candidates', done: matches.length, total: candidates.count });
      }
      const scores = matches.map((m) => m.score);
      return {
        scores,
        matches,
        reference,
        threshold,
        flagged: scores.flatMap((s, i) => (s > threshold ? [i] : [])),
        settings,
        size: privateStore.meta.size,
        privateTrainSlices: train.length,
        privateTestSlices: test.length,
        pairs: (candidates.count + test.length) * 2 * train.length,
        seconds: (performance.now() - started) / 1000,
      };
    } finally {
      await privateStore.close();
    }
  } finally {
    await candidates.close();
  }
}
