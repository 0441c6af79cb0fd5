// Exact Euclidean distance transform of a 3-D voxel grid with anisotropic spacing.
//
// Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions", Theory of Computing 8 (2012): the
// squared distance (sx·dx)² + (sy·dy)² + (sz·dz)² separates into one pass per axis, each pass replacing a line
// f by g(q) = min_p (s·(q - p))² + f(p), the lower envelope of parabolas rooted at p. That is O(n) per line, so
// the whole transform is O(voxels) whatever the shape, and per-axis spacing only rescales each axis' parabolas.
//
// Layout for speed: the z pass runs first, while the input is still binary, where it reduces to "nearest site
// above or below in the column", tracked per column while walking the planes in order; the y and x passes then
// work inside one xy-plane at a time (a cache-sized buffer, never a volume of doubles), and a plane or row
// without query voxels is skipped. HD95 only needs distances at surface voxels, so most of the volume is never
// transformed at all.

/** Grid size [W, H, D], x fastest, then y, then z. */
export type VolumeDims = readonly [number, number, number];
/** Voxel spacing [sx, sy, sz] in mm. */
export type VoxelSpacing = readonly [number, number, number];

/** Throws unless `dims` are positive integers and `spacing` positive finite numbers; returns the voxel count. */
export function checkGrid(dims: VolumeDims, spacing: VoxelSpacing): number {
  if (dims.length !== 3 || !dims.every((n) => Number.isInteger(n) && n > 0)) {
    throw new RangeError(`dims must be three positive integers, got [${dims.join(', ')}]`);
  }
  if (spacing.length !== 3 || !spacing.every((s) => Number.isFinite(s) && s > 0)) {
    throw new RangeError(`spacing must be three positive finite numbers (mm), got [${spacing.join(', ')}]`);
  }
  return dims[0] * dims[1] * dims[2];
}

/**
 * Squared distance in mm² from every voxel centre to the nearest site (a non-zero voxel of `sites`); 0 on the
 * sites, Infinity everywhere when there is no site.
 */
export function squaredDistanceTransform(
  sites: Uint8Array,
  dims: VolumeDims,
  spacing: VoxelSpacing,
): Float64Array {
  const voxels = checkGrid(dims, spacing);
  if (sites.length !== voxels) {
    throw new RangeError(`sites hold ${sites.length} voxels, dims [${dims.join(', ')}] need ${voxels}`);
  }
  const siteIndices: number[] = [];
  for (let i = 0; i < voxels; i++) if (sites[i] !== 0) siteIndices.push(i);
  const out = new Float64Array(voxels);
  transform(Int32Array.from(siteIndices), null, dims, spacing, out);
  return out;
}

/**
 * Squared distance in mm² from each query voxel to the nearest site, both given as voxel indices in increasing
 * order (x + W·(y + H·z)); Infinity for every query when there is no site.
 */
export function squaredDistancesAt(
  sites: Int32Array,
  queries: Int32Array,
  dims: VolumeDims,
  spacing: VoxelSpacing,
): Float64Array {
  const voxels = checkGrid(dims, spacing);
  checkIndices(sites, voxels, 'sites');
  checkIndices(queries, voxels, 'queries');
  const out = new Float64Array(queries.length);
  transform(sites, queries, dims, spacing, out);
  return out;
}

function checkIndices(indices: Int32Array, voxels: number, what: string): void {
  for (let n = 0; n < indices.length; n++) {
    const index = indices[n];
    if (index < 0 || index >= voxels || (n > 0 && index <= indices[n - 1])) {
      throw new RangeError(
        `${what} must be increasing voxel indices below ${voxels}; entry ${n} is ${index}`,
      );
    }
  }
}

/** Fills out[n] with the squared distance at queries[n], or at voxel n when `queries` is null (every voxel). */
function transform(
  sites: Int32Array,
  queries: Int32Array | null,
  dims: VolumeDims,
  spacing: VoxelSpacing,
  out: Float64Array,
): void {
  const [w, h, d] = dims;
  const [sx, sy, sz] = spacing;
  const plane = w * h;
  if (sites.length === 0) {
    out.fill(Infinity);
    return;
  }
  // Per column, kept in y-fastest order (x·H + y) so that the y pass reads contiguous lines: the z of the
  // nearest site at or below the current plane, of the nearest one above it, and per site the next one up.
  const columnOf = (index: number): number => {
    const xy = index % plane;
    const x = xy % w;
    return x * h + (xy - x) / w;
  };
  const nextInColumn = new Int32Array(sites.length).fill(-1);
  const lastInColumn = new Int32Array(plane).fill(-1);
  const siteBelow = new Float64Array(plane).fill(-Infinity);
  const siteAbove = new Float64Array(plane).fill(Infinity);
  for (let n = 0; n < sites.length; n++) {
    const column = columnOf(sites[n]);
    const z = Math.floor(sites[n] / plane);
    const previous = lastInColumn[column];
    if (previous >= 0) nextInColumn[previous] = z;
    else siteAbove[column] = z;
    lastInColumn[column] = n;
  }

  const values = new Float64Array(plane); // one plane, y fastest
  const scratch = new EnvelopeScratch(Math.max(w, h));
  const queryCount = queries === null ? out.length : queries.length;
  let siteCursor = 0;
  let queryCursor = 0;
  for (let z = 0; z < d; z++) {
    const planeStart = z * plane;
    const planeEnd = planeStart + plane;
    // Sites in this plane become the nearest below; their column's next site becomes the nearest above.
    for (; siteCursor < sites.length && sites[siteCursor] < planeEnd; siteCursor++) {
      const column = columnOf(sites[siteCursor]);
      siteBelow[column] = z;
      const next = nextInColumn[siteCursor];
      siteAbove[column] = next < 0 ? Infinity : next;
    }
    if (queryCursor >= queryCount || queryAt(queries, queryCursor) >= planeEnd) continue;

    for (let column = 0; column < plane; column++) {
      const mm = sz * Math.min(z - siteBelow[column], siteAbove[column] - z);
      values[column] = mm * mm;
    }
    if (h > 1) {
      for (let x = 0; x < w; x++) {
        if (buildEnvelope(values, x * h, 1, h, sy, scratch) >= 0)
          writeEnvelope(values, x * h, 1, h, sy, scratch);
      }
    }
    // x pass, row by row, only where there are queries and only at them.
    while (queryCursor < queryCount && queryAt(queries, queryCursor) < planeEnd) {
      const y = Math.floor((queryAt(queries, queryCursor) - planeStart) / w);
      const rowStart = planeStart + y * w;
      const top = buildEnvelope(values, y, h, w, sx, scratch);
      let k = 0;
      for (; queryCursor < queryCount; queryCursor++) {
        const query = queryAt(queries, queryCursor);
        if (query >= rowStart + w) break;
        if (top < 0) {
          out[queryCursor] = Infinity;
          continue;
        }
        k = envelopeValueAt(query - rowStart, sx, scratch, k);
        out[queryCursor] = scratch.lastValue;
      }
    }
  }
}

function queryAt(queries: Int32Array | null, n: number): number {
  return queries === null ? n : queries[n];
}

/** Work buffers reused by every line, so the passes allocate nothing; entry k describes envelope parabola k. */
class EnvelopeScratch {
  /** sample index p of the parabola's root */
  readonly roots: Int32Array;
  /** f(p) */
  readonly heights: Float64Array;
  /** f(p) + (s·p)², the constant of the intersection formula */
  readonly keys: Float64Array;
  /** physical positions where parabola k starts; bounds[k + 1] is where it ends */
  readonly bounds: Float64Array;
  /** the value envelopeValueAt computed last */
  lastValue = 0;

  constructor(length: number) {
    this.roots = new Int32Array(length);
    this.heights = new Float64Array(length);
    this.keys = new Float64Array(length);
    this.bounds = new Float64Array(length + 1);
  }
}

/**
 * Lower envelope of the parabolas (s·(t - p))² + f(p) of the line f(q) = line[offset + q·stride], q < n.
 * Infinite samples root no parabola (they can never be the minimum). Returns the index of the last envelope
 * parabola, -1 for a line without finite samples.
 */
function buildEnvelope(
  line: Float64Array,
  offset: number,
  stride: number,
  n: number,
  s: number,
  scratch: EnvelopeScratch,
): number {
  const { roots, heights, keys, bounds } = scratch;
  let top = -1;
  for (let q = 0; q < n; q++) {
    const fq = line[offset + q * stride];
    if (fq === Infinity) continue;
    const pq = s * q;
    const key = fq + pq * pq;
    // Where the new parabola overtakes the top of the envelope; pop parabolas it hides completely.
    // bounds[0] = -Infinity ends the loop, the intersection of two finite parabolas being finite.
    let crossing = -Infinity;
    while (top >= 0) {
      crossing = (key - keys[top]) / (2 * (pq - s * roots[top]));
      if (crossing > bounds[top]) break;
      top--;
    }
    top++;
    roots[top] = q;
    heights[top] = fq;
    keys[top] = key;
    bounds[top] = top === 0 ? -Infinity : crossing;
  }
  if (top >= 0) bounds[top + 1] = Infinity;
  return top;
}

/** Writes the envelope's value at every sample back into the line. */
function writeEnvelope(
  line: Float64Array,
  offset: number,
  stride: number,
  n: number,
  s: number,
  scratch: EnvelopeScratch,
): void {
  let k = 0;
  for (let q = 0; q < n; q++) {
    k = envelopeValueAt(q, s, scratch, k);
    line[offset + q * stride] = scratch.lastValue;
  }
}

/**
 * The envelope's value at sample q, searching forward from envelope parabola k (queries come in increasing q);
 * leaves the value in scratch.lastValue and returns the parabola index to resume from.
 */
function envelopeValueAt(q: number, s: number, scratch: EnvelopeScratch, k: number): number {
  const { bounds, roots, heights } = scratch;
  const position = s * q;
  while (bounds[k + 1] < position) k++;
  // (s·(q - p))² from the integer offset rather than (position - s·p)², which would cancel.
  const offsetMm = s * (q - roots[k]);
  scratch.lastValue = offsetMm * offsetMm + heights[k];
  return k;
}
