// The memorization audit (DESIGN.md step 6) on one site: every candidate's maximum Pearson correlation against the
// site's private training slices and their left-right mirrors, coarse to fine:
//   1. coarse: candidates and private slices area-averaged to 16² (32² from 128² up), four image channels, masked
//      to the candidate's foreground and normalized once (vectors.ts); one blocked float32 matrix product per block of candidates keeps the top k;
//   2. exact: those k re-scored at full resolution, with a small shift search (hill climbing over whole-pixel
//      shifts of the candidate, up to maxShift): a copy moved by a few pixels is still a copy.
// The site's reference is the same score for each of its held-out test slices (an unseen real slice of another
// subject): the threshold is a high quantile of that plus a margin (see auditThreshold). A site with no held-out
// subject (a small hospital: the 15% subject split often leaves none of 4–7 cases) uses a leave-one-subject-out
// reference instead: each of its training slices (a seeded sample of at most referenceSlices) against the training
// slices of the other patients and their mirrors (subjects are patients: BraTS 2023 timepoints of one patient are
// one subject, see patientKey). With one training patient there is no unseen slice at all.
import { SliceStoreReader } from '../slices/slice-store.js';
import { patientKey } from '../slices/subject-split.js';
import { createRng } from '../util/rng.js';
import { coarseTopK, type ExcludedGroups } from './coarse-search.js';
import { jsKernel, productKernel, type KernelPrivates, type ProductKernel } from './products.js';
import {
  allocPrivates,
  allocQueries,
  AUDIT_CHANNELS,
  defaultCoarseSize,
  imageOf,
  maskedPearson,
  MIN_MASK_SHARE,
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
  /**
   * at most this many training slices (a seeded sample) make a leave-one-subject-out reference (default 256): the
   * reference then costs no more than 256 held-out slices would
   */
  referenceSlices?: number;
}

/**
 * Where the threshold's reference came from: the held-out test slices, or (no held-out subject) training slices
 * each scored against the other training subjects only.
 */
export type ReferenceKind = 'held-out' | 'leave-one-subject-out';

export const DEFAULT_REFERENCE_SLICES = 256;

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
  /** matrix products of the coarse stage: 'auto' (tfjs native or wasm when available, else JS loops) or 'js' */
  kernel?: 'auto' | 'js';
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
  referenceKind: ReferenceKind;
  /** subjects whose slices make the reference */
  referenceSubjects: number;
  threshold: number;
  flagged: number[];
  settings: Required<AuditSettings>;
  size: number;
  privateTrainSlices: number;
  privateTestSlices: number;
  /** candidate × private pairs scored (mirrors counted) and the time it took, reference included */
  pairs: number;
  seconds: number;
  /** the coarse stage's product kernel: 'js' or the tfjs backend ('wasm', 'tensorflow') */
  kernel: string;
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

/** No unseen real slice to set the threshold from (one training subject, none held out). No path in the message. */
export class AuditReferenceError extends Error {
  override readonly name = 'AuditReferenceError';
  readonly code = 'no_unseen_reference';
}

/** True for AuditReferenceError, also as rebuilt from a worker thread's message (name and code only). */
export function isAuditReferenceError(error: unknown): error is Error & { code: string } {
  return (
    error instanceof Error &&
    error.name === 'AuditReferenceError' &&
    typeof (error as { code?: unknown }).code === 'string'
  );
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
    referenceSlices: Math.max(1, Math.floor(settings.referenceSlices ?? DEFAULT_REFERENCE_SLICES)),
  };
}

/** Bytes of raw slices read at once while building the coarse index. */
const EXACT_BYTES = 64 * 2 ** 20;
/** Bytes of prepared full-resolution private rows the exact stage keeps between queries (all of them at 64²). */
const PREPARED_BYTES = 128 * 2 ** 20;

/** The site's training slices in the form the search needs: coarse rows (originals, then mirrors) in memory. */
export class PrivateIndex {
  private constructor(
    readonly reader: SliceStoreReader,
    readonly geometry: SliceGeometry,
    /** store indices of the training slices; coarse row r is train[r] (r < n) or its mirror (r ≥ n) */
    readonly train: number[],
    readonly coarse: PreparedPrivates,
    readonly factor: number,
    /** the coarse rows as the product kernel holds them */
    readonly held: KernelPrivates,
    readonly kernel: ProductKernel,
  ) {}

  static async build(
    reader: SliceStoreReader,
    train: number[],
    coarseSize: number,
    onProgress?: (done: number, total: number) => void,
    kernel: ProductKernel = jsKernel,
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
    return new PrivateIndex(reader, geometry, train, coarse, factor, kernel.holdPrivates(coarse), kernel);
  }

  /** Frees the kernel's copy of the coarse rows (tensors on a tfjs backend). */
  dispose(): void {
    this.held.dispose();
  }
}

/**
 * Full-resolution private rows, prepared once and kept (least recently used out) for the exact stage: the same
 * private slice is in the top k of many queries.
 */
class FullResRows {
  readonly rows: PreparedPrivates;
  readonly capacity: number;
  private readonly slotOf = new Map<number, number>();
  private readonly free: number[];
  readonly centroids: Float64Array;

  constructor(
    private readonly index: PrivateIndex,
    minRows: number,
  ) {
    const pixels = index.geometry.size ** 2;
    this.capacity = Math.max(
      minRows,
      Math.min(2 * index.train.length, Math.floor(PREPARED_BYTES / (pixels * (AUDIT_CHANNELS + 2) * 4))),
    );
    this.rows = allocPrivates(pixels, this.capacity);
    this.centroids = new Float64Array(2 * this.capacity);
    this.free = Array.from({ length: this.capacity }, (_, i) => this.capacity - 1 - i);
  }

  /** Makes every coarse row of `wanted` (at most `capacity` distinct) resident. */
  async ensure(wanted: Set<number>): Promise<void> {
    const n = this.index.train.length;
    const missing = [...wanted].filter((r) => !this.slotOf.has(r));
    for (const row of wanted) {
      // Touch: re-inserting moves a row to the young end of the map's order.
      const slot = this.slotOf.get(row);
      if (slot !== undefined) {
        this.slotOf.delete(row);
        this.slotOf.set(row, slot);
      }
    }
    if (missing.length === 0) return;
    for (const [row, slot] of this.slotOf) {
      if (this.free.length >= missing.length) break;
      if (wanted.has(row)) continue;
      this.slotOf.delete(row);
      this.free.push(slot);
    }
    const storeIds = [...new Set(missing.map((r) => this.index.train[r % n]!))];
    const where = new Map(storeIds.map((id, k) => [id, k] as const));
    const slices = await this.index.reader.readIndices(storeIds);
    const { geometry } = this.index;
    const pixels = geometry.size ** 2;
    const img = new Float32Array(pixels * AUDIT_CHANNELS);
    for (const row of missing) {
      const slot = this.free.pop()!;
      const k = where.get(this.index.train[row % n]!)!;
      const mirror = row >= n;
      imageOf(slices, k, geometry, { mirror }, img);
      preparePrivate(img, pixels, this.rows.values, this.rows.sums, this.rows.squares, slot);
      const [cx, cy] = foregroundCentroid(slices, k, geometry, mirror);
      this.centroids[2 * slot] = cx;
      this.centroids[2 * slot + 1] = cy;
      this.slotOf.set(row, slot);
    }
  }

  slot(row: number): number {
    return this.slotOf.get(row)!;
  }
}

/** Per-shift statistics of a query's masked pixels that stay in the frame (see FullResQuery). */
interface ShiftStats {
  /** values under the shifted mask (4 per pixel) */
  n: number;
  mean: number;
  /** 1 / ‖m ⊙ (q − mean)‖ */
  scale: number;
}

/**
 * A full-resolution query, read once, scored at any whole-pixel shift without re-preparing it. Shifting moves the
 * masked pixels (zero-filled pixels are below the mask level, so none join); those pushed out of the frame drop
 * out. So the shifted query's mask is the original one clipped to the rows and columns that stay in the frame,
 * and the masked Pearson against private p is
 *   r = (Σ q·p − mean·Σ_m p) · scale / sqrt(Σ_m p² − (Σ_m p)² / n)
 * over that clipped mask (the same quantity as pairScore of the re-prepared shifted query, in another summation
 * order: equal to ~1e-7). Mean, n and scale per shift come from per-row prefix sums. The only case re-prepared
 * from the pixels: a shift leaving less than MIN_MASK_SHARE of the frame masked (prepareQuery then masks the whole
 * slice), and any shift of a query already on that whole-slice fallback.
 */
class FullResQuery {
  /** the unshifted query as prepareQuery leaves it (its mask is used below) */
  readonly prepared: PreparedQueries;
  /** the query's pixel values under its mask (0 elsewhere), 4 per pixel */
  private readonly masked: Float32Array;
  /** first/last masked column per row (first > last: none) */
  private readonly first: Int32Array;
  private readonly last: Int32Array;
  /** per row, prefix sums over columns of masked pixel count, value sum and value square sum */
  private readonly prefix: Float64Array;
  private y0 = 0;
  private y1 = -1;
  private fallback = false;
  private readonly img: Float32Array;
  private readonly stats = new Map<number, ShiftStats | PreparedQueries>();
  private data!: Uint8Array;
  private qi = 0;

  constructor(private readonly geometry: SliceGeometry) {
    const { size } = geometry;
    const pixels = size * size;
    this.prepared = allocQueries(pixels, 1);
    this.masked = new Float32Array(pixels * AUDIT_CHANNELS);
    this.first = new Int32Array(size);
    this.last = new Int32Array(size);
    this.prefix = new Float64Array(size * (size + 1) * 3);
    this.img = new Float32Array(pixels * AUDIT_CHANNELS);
  }

  load(data: Uint8Array, qi: number): void {
    const { size } = this.geometry;
    const pixels = size * size;
    this.data = data;
    this.qi = qi;
    this.stats.clear();
    const img = imageOf(data, qi, this.geometry, {}, this.img);
    this.prepared.n[0] = prepareQuery(img, pixels, this.prepared.centred, this.prepared.mask, 0);
    const mask = this.prepared.mask;
    this.y0 = size;
    this.y1 = -1;
    let masked = 0;
    const pre = this.prefix;
    for (let y = 0; y < size; y++) {
      let f = size;
      let l = -1;
      let o = y * (size + 1) * 3;
      pre[o] = pre[o + 1] = pre[o + 2] = 0;
      for (let x = 0; x < size; x++, o += 3) {
        const p = y * size + x;
        const on = mask[p] !== 0;
        let s = 0;
        let q = 0;
        for (let c = 0; c < AUDIT_CHANNELS; c++) {
          const v = on ? img[p * AUDIT_CHANNELS + c]! : 0;
          this.masked[p * AUDIT_CHANNELS + c] = v;
          s += v;
          q += v * v;
        }
        pre[o + 3] = pre[o]! + (on ? 1 : 0);
        pre[o + 4] = pre[o + 1]! + s;
        pre[o + 5] = pre[o + 2]! + q;
        if (on) {
          if (f === size) f = x;
          l = x;
        }
      }
      this.first[y] = f;
      this.last[y] = l;
      if (l >= 0) {
        this.y0 = Math.min(this.y0, y);
        this.y1 = y;
        masked += pre[y * (size + 1) * 3 + size * 3]!;
      }
    }
    // A whole-slice mask (prepareQuery's fallback, or a frame-filling foreground): shifts are re-prepared.
    this.fallback = masked === pixels;
  }

  /** Masked Pearson of this query shifted by (dx, dy) against prepared private row `slot`. */
  score(p: PreparedPrivates, slot: number, dx: number, dy: number): number {
    const st = this.shiftStats(dx, dy);
    if ('centred' in st) return pairScore(st, 0, p, slot);
    if (st.n === 0) return 0;
    const { size } = this.geometry;
    const q = this.masked;
    const pv = p.values;
    const ps = p.sums;
    const pq = p.squares;
    const pBase = slot * size * size;
    let n0 = 0;
    let n1 = 0;
    let n2 = 0;
    let n3 = 0;
    let s1 = 0;
    let s2 = 0;
    const ya = Math.max(this.y0, -dy);
    const yb = Math.min(this.y1, size - 1 - dy);
    for (let y = ya; y <= yb; y++) {
      const f = Math.max(this.first[y]!, -dx);
      const l = Math.min(this.last[y]!, size - 1 - dx);
      if (l < f) continue;
      const qp = y * size + f;
      const pp = pBase + (y + dy) * size + f + dx;
      const qm = this.prepared.mask;
      for (let i = 0, w = l - f + 1; i < w; i++) {
        const a = (qp + i) * AUDIT_CHANNELS;
        const b = (pp + i) * AUDIT_CHANNELS;
        n0 += q[a]! * pv[b]!;
        n1 += q[a + 1]! * pv[b + 1]!;
        n2 += q[a + 2]! * pv[b + 2]!;
        n3 += q[a + 3]! * pv[b + 3]!;
        const m = qm[qp + i]!;
        s1 += m * ps[pp + i]!;
        s2 += m * pq[pp + i]!;
      }
    }
    return maskedPearson((n0 + n1 + n2 + n3 - st.mean * s1) * st.scale, s1, s2, st.n);
  }

  private shiftStats(dx: number, dy: number): ShiftStats | PreparedQueries {
    const key = (dy + 1024) * 2048 + dx + 1024;
    let st = this.stats.get(key);
    if (st) return st;
    const { size } = this.geometry;
    const pixels = size * size;
    if (this.fallback && (dx !== 0 || dy !== 0)) {
      st = this.reprepared(dx, dy);
    } else {
      let count = 0;
      let sum = 0;
      let sq = 0;
      const pre = this.prefix;
      for (let y = Math.max(this.y0, -dy), yb = Math.min(this.y1, size - 1 - dy); y <= yb; y++) {
        const f = Math.max(this.first[y]!, -dx);
        const l = Math.min(this.last[y]!, size - 1 - dx);
        if (l < f) continue;
        const a = (y * (size + 1) + f) * 3;
        const b = (y * (size + 1) + l + 1) * 3;
        count += pre[b]! - pre[a]!;
        sum += pre[b + 1]! - pre[a + 1]!;
        sq += pre[b + 2]! - pre[a + 2]!;
      }
      if (count < MIN_MASK_SHARE * pixels && !this.fallback) {
        st = this.reprepared(dx, dy);
      } else {
        const n = count * AUDIT_CHANNELS;
        const mean = sum / n;
        const variance = sq - sum * mean;
        // Relative test too: the prefix sums cancel to rounding noise for a constant query.
        st =
          variance > 1e-12 && variance > 1e-10 * sq
            ? { n, mean, scale: 1 / Math.sqrt(variance) }
            : { n: 0, mean: 0, scale: 0 };
      }
    }
    this.stats.set(key, st);
    return st;
  }

  /** The shifted query prepared from its pixels, as prepareQuery does (whole-slice fallback masks). */
  private reprepared(dx: number, dy: number): PreparedQueries {
    const pixels = this.geometry.size ** 2;
    const q = allocQueries(pixels, 1);
    q.n[0] = prepareQuery(
      imageOf(this.data, this.qi, this.geometry, { dx, dy }, this.img),
      pixels,
      q.centred,
      q.mask,
      0,
    );
    return q;
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
  rows?: FullResRowsHandle,
  /** per query, a patient (a value of `subjectOfTrain`) whose training slices it may not match; -1: none */
  excluded?: { subjectOfTrain: Int32Array; subjectOfQuery: Int32Array },
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
  let groups: ExcludedGroups | undefined;
  if (excluded) {
    // Coarse row r is train[r % n] or its mirror: both belong to that slice's patient.
    const rowGroups = new Int32Array(2 * n);
    for (let r = 0; r < 2 * n; r++) rowGroups[r] = excluded.subjectOfTrain[r % n]!;
    groups = { rows: rowGroups, queries: excluded.subjectOfQuery };
  }
  const tops = coarseTopK(queries, index.held, topK, index.kernel, groups);

  const kk = tops.reduce((m, t) => Math.max(m, t.length), 1);
  const cache = (rows?.cache as FullResRows | undefined) ?? new FullResRows(index, kk);
  if (rows) rows.cache = cache;
  const full = cache.rows;
  const query = new FullResQuery(queryGeometry);
  const span = 2 * maxShift + 1;
  const memo = new Map<number, number>();
  const out: AuditMatch[] = [];
  // Exact stage in sub-blocks whose distinct private rows fit in the cache.
  const sub = Math.max(1, Math.floor(cache.capacity / kk));
  for (let s0 = 0; s0 < count; s0 += sub) {
    const s1 = Math.min(count, s0 + sub);
    await cache.ensure(new Set(tops.slice(s0, s1).flatMap((t) => [...t.rows.subarray(0, t.length)])));
    for (let qi = s0; qi < s1; qi++) {
      query.load(data, qi);
      memo.clear();
      // Each of the top k at full resolution from two starts: no shift, and the shift that lines up the foreground
      // centroids; then hill climbing over whole-pixel shifts (±maxShift) from the CLIMBS best starting points.
      // Scores are memoized per (row, shift): climbs revisit their neighbours' neighbours.
      const [qx, qy] = foregroundCentroid(data, qi, queryGeometry);
      const clamp = (v: number) => Math.max(-maxShift, Math.min(maxShift, Math.round(v)));
      const top = tops[qi]!;
      const scoreAt = (t: number, dx: number, dy: number): number => {
        const key = (t * span + dy + maxShift) * span + dx + maxShift;
        let s = memo.get(key);
        if (s === undefined) {
          s = query.score(full, cache.slot(top.rows[t]!), dx, dy);
          memo.set(key, s);
        }
        return s;
      };
      const starts: Array<{ t: number; dx: number; dy: number; score: number }> = [];
      for (let t = 0; t < top.length; t++) {
        const slot = cache.slot(top.rows[t]!);
        starts.push({ t, dx: 0, dy: 0, score: scoreAt(t, 0, 0) });
        const [ax, ay] = [clamp(cache.centroids[2 * slot]! - qx), clamp(cache.centroids[2 * slot + 1]! - qy)];
        if (ax !== 0 || ay !== 0) starts.push({ t, dx: ax, dy: ay, score: scoreAt(t, ax, ay) });
      }
      starts.sort((x, y) => y.score - x.score);
      let best: AuditMatch = { ...NO_MATCH, score: -Infinity };
      for (const [i, start] of starts.entries()) {
        const end =
          i < CLIMBS ? climb(start.dx, start.dy, maxShift, (x, y) => scoreAt(start.t, x, y)) : start;
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

/** Lets successive scoreQueries calls share their prepared full-resolution private rows. */
export interface FullResRowsHandle {
  cache?: unknown;
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

/**
 * The reference's queries: store indices, and the patient each may not match when there is one. Groups are
 * patients (patientKey), not cases: a BraTS 2023 follow-up scan (…-001) of a training patient is no unseen slice.
 */
interface ReferencePlan {
  kind: ReferenceKind;
  ids: number[];
  /** patients whose slices make the reference */
  subjects: number;
  excluded?: { subjectOfTrain: Int32Array; subjectOfQuery: Int32Array };
}

/**
 * The held-out test slices when there are any; else leave-one-subject-out over the training patients (at most
 * `limit` slices, a seeded sample); a single training patient and none held out fails with AuditReferenceError.
 * Subjects are grouped by patient: two timepoints of one patient are one subject. A held-out slice whose patient
 * also has training scans (a store split case by case, before patients were grouped) skips that patient too.
 */
export function planReference(store: SliceStoreReader, train: number[], limit: number): ReferencePlan {
  const patientGroup = new Map<string, number>();
  const groupOf = (id: string): number => {
    const key = patientKey(id);
    let g = patientGroup.get(key);
    if (g === undefined) patientGroup.set(key, (g = patientGroup.size));
    return g;
  };
  const testSubjects = store.meta.subjects.filter((s) => s.split === 'test' && s.count > 0);
  const trainSubjects = store.meta.subjects.filter((s) => s.split === 'train' && s.count > 0);
  // train lists the training subjects' slices in store order (indicesOf): its subject runs line up with these.
  const subjectOfTrain = new Int32Array(train.length);
  let at = 0;
  for (const s of trainSubjects) subjectOfTrain.fill(groupOf(s.id), at, (at += s.count));
  if (at !== train.length) throw new Error('training subjects and training slices disagree');
  const trainPatients = new Set(subjectOfTrain);

  if (testSubjects.length > 0) {
    const ids = store.indicesOf('test');
    const subjectOfQuery = new Int32Array(ids.length);
    let q = 0;
    for (const s of testSubjects) {
      const g = groupOf(s.id);
      subjectOfQuery.fill(trainPatients.has(g) ? g : -1, q, (q += s.count));
    }
    if (q !== ids.length) throw new Error('test subjects and test slices disagree');
    return {
      kind: 'held-out',
      ids,
      subjects: new Set(testSubjects.map((s) => patientKey(s.id))).size,
      ...(subjectOfQuery.some((g) => g >= 0) ? { excluded: { subjectOfTrain, subjectOfQuery } } : {}),
    };
  }
  if (trainPatients.size < 2) {
    throw new AuditReferenceError(
      'the private slices hold a single training subject (patient) and no held-out test subject, so there is no ' +
        'unseen real slice to set the audit threshold from: the audit needs held-out test slices or at least 2 ' +
        'training patients',
    );
  }
  let picked = Array.from({ length: train.length }, (_, i) => i);
  if (picked.length > limit) {
    // Seeded (partial Fisher–Yates): the same store gives the same reference every run.
    const rng = createRng(`audit-reference:${store.meta.split.seed}:${train.length}`);
    for (let i = 0; i < limit; i++) {
      const j = i + rng.int(picked.length - i);
      [picked[i], picked[j]] = [picked[j]!, picked[i]!];
    }
    picked = picked.slice(0, limit).sort((a, b) => a - b);
  }
  return {
    kind: 'leave-one-subject-out',
    ids: picked.map((i) => train[i]!),
    subjects: new Set(picked.map((i) => subjectOfTrain[i]!)).size,
    excluded: { subjectOfTrain, subjectOfQuery: Int32Array.from(picked, (i) => subjectOfTrain[i]!) },
  };
}

/** The whole audit on one site: the reference (held-out or leave-one-subject-out), then every candidate. */
export async function runAudit(options: AuditRunOptions): Promise<AuditResult> {
  const started = performance.now();
  const candidates = await SliceStoreReader.open(options.candidates);
  try {
    const privateStore = await SliceStoreReader.open(options.privateStore);
    try {
      checkStores(candidates, privateStore);
      const settings = resolveSettings(privateStore.meta.size, options);
      const train = privateStore.indicesOf('train');
      if (train.length === 0)
        throw new AuditInputError(privateStore.file, 'has no training slices to audit against');
      const plan = planReference(privateStore, train, settings.referenceSlices);
      const test = plan.ids;
      const report = options.onProgress ?? (() => undefined);
      const kernel = await productKernel(options.kernel);
      const index = await PrivateIndex.build(
        privateStore,
        train,
        settings.coarseSize,
        (done, total) => report({ stage: 'load', done, total }),
        kernel,
      );
      try {
        const rows: FullResRowsHandle = {};
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
            rows,
            plan.excluded && {
              subjectOfTrain: plan.excluded.subjectOfTrain,
              subjectOfQuery: plan.excluded.subjectOfQuery.subarray(i, i + ids.length),
            },
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
            ...(await scoreQueries(
              await candidates.readRange(i, n),
              n,
              candidateGeometry,
              index,
              settings,
              rows,
            )),
          );
          report({ stage: 'candidates', done: matches.length, total: candidates.count });
        }
        const scores = matches.map((m) => m.score);
        return {
          scores,
          matches,
          reference,
          referenceKind: plan.kind,
          referenceSubjects: plan.subjects,
          threshold,
          flagged: scores.flatMap((s, i) => (s > threshold ? [i] : [])),
          settings,
          size: privateStore.meta.size,
          privateTrainSlices: train.length,
          privateTestSlices: plan.kind === 'held-out' ? test.length : 0,
          pairs: (candidates.count + test.length) * 2 * train.length,
          seconds: (performance.now() - started) / 1000,
          kernel: kernel.name,
        };
      } finally {
        index.dispose();
      }
    } finally {
      await privateStore.close();
    }
  } finally {
    await candidates.close();
  }
}
