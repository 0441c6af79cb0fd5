// Surface distances and their 95th percentile, computed the way medpy.metric.binary.hd95 does (the function
// behind nnU-Net's reimplementation of the BraTS evaluation):
//   surface(M)  = M xor binary_erosion(M, 6-connected cross), scipy's erosion treating outside the volume as
//                 background, so mask voxels on the volume border are surface;
//   A -> B      = distance_transform_edt(not surface(B), sampling=spacing) read at surface(A), in mm;
//   HD95        = numpy.percentile(concatenate(A -> B, B -> A), 95), linear interpolation.
// Conventions for empty masks live with the callers (segmentation-metrics.ts); here both masks are non-empty.
import { squaredDistancesAt, type VolumeDims, type VoxelSpacing } from './distance-transform.js';

/**
 * Surface voxels of up to 8 structures in one pass. A voxel of value v belongs to structure k when bit k of
 * `structuresOf[v]` is set (a 256-entry table); it is on the structure's surface when one of its six face
 * neighbours is not in the structure or lies outside the volume. Returns, per structure, the voxel indices in
 * increasing order.
 */
export function collectSurfaces(
  volume: Uint8Array,
  dims: VolumeDims,
  structuresOf: Uint8Array,
  structureCount: number,
): Int32Array[] {
  const [w, h, d] = dims;
  const plane = w * h;
  const lists = Array.from({ length: structureCount }, () => new IndexList());
  let i = 0;
  for (let z = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        const bits = structuresOf[volume[i]];
        if (bits === 0) continue;
        let interior = bits;
        interior &= x > 0 ? structuresOf[volume[i - 1]] : 0;
        interior &= x < w - 1 ? structuresOf[volume[i + 1]] : 0;
        interior &= y > 0 ? structuresOf[volume[i - w]] : 0;
        interior &= y < h - 1 ? structuresOf[volume[i + w]] : 0;
        interior &= z > 0 ? structuresOf[volume[i - plane]] : 0;
        interior &= z < d - 1 ? structuresOf[volume[i + plane]] : 0;
        let surface = bits & ~interior;
        while (surface !== 0) {
          const lowest = surface & -surface;
          lists[31 - Math.clz32(lowest)].push(i);
          surface ^= lowest;
        }
      }
    }
  }
  return lists.map((list) => list.toArray());
}

/** An append-only list of voxel indices, without the boxing and regrowth of a number[] of millions. */
class IndexList {
  private data = new Int32Array(1024);
  private length = 0;

  push(index: number): void {
    if (this.length === this.data.length) {
      const grown = new Int32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = index;
  }

  toArray(): Int32Array {
    return this.data.slice(0, this.length);
  }
}

/**
 * Distances in mm from each voxel of `a` to the nearest voxel of `b`, then from each voxel of `b` to the nearest
 * voxel of `a` (increasing voxel index lists, normally surfaces; both non-empty), concatenated in that order.
 */
export function symmetricSurfaceDistances(
  a: Int32Array,
  b: Int32Array,
  dims: VolumeDims,
  spacing: VoxelSpacing,
): Float64Array {
  return symmetricSquaredDistances(a, b, dims, spacing).map(Math.sqrt);
}

/**
 * The `percent`-th percentile as numpy.percentile computes it by default ('linear'): sorted values v, virtual
 * index (n - 1)·percent/100 between neighbours v[i], v[i + 1], interpolated with numpy's _lerp (which works from
 * the nearer end, so a result at t ≥ 0.5 rounds like numpy's). Does not modify `values`.
 */
export function percentileLinear(values: ArrayLike<number>, percent: number): number {
  return percentileInPlace(Float64Array.from(values), percent, (v) => v);
}

/** HD95 (mm) between two non-empty voxel sets given by their surfaces; see the header for the definition. */
export function hd95FromSurfaces(
  a: Int32Array,
  b: Int32Array,
  dims: VolumeDims,
  spacing: VoxelSpacing,
): number {
  // Order statistics of the squared distances are the squares of the distances' (sqrt is increasing), so only
  // the two that numpy interpolates between need a square root.
  return percentileInPlace(symmetricSquaredDistances(a, b, dims, spacing), 95, Math.sqrt);
}

/**
 * Squared distances, in the order of symmetricSurfaceDistances. The transforms run over the bounding box of
 * a ∪ b only: every site and every query lies inside it, so the minimum over the box is the minimum over the
 * volume, and a tumour in a 240×240×155 volume costs what its own box costs.
 */
function symmetricSquaredDistances(
  a: Int32Array,
  b: Int32Array,
  dims: VolumeDims,
  spacing: VoxelSpacing,
): Float64Array {
  if (a.length === 0 || b.length === 0) throw new RangeError('surface distances need two non-empty surfaces');
  const [w, h] = dims;
  let [x0, y0, z0, x1, y1, z1] = [Infinity, Infinity, Infinity, -1, -1, -1];
  for (const list of [a, b]) {
    for (let n = 0; n < list.length; n++) {
      const index = list[n];
      const x = index % w;
      const yz = (index - x) / w;
      const y = yz % h;
      const z = (yz - y) / h;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      if (z < z0) z0 = z;
      if (z > z1) z1 = z;
    }
  }
  const boxDims: VolumeDims = [x1 - x0 + 1, y1 - y0 + 1, z1 - z0 + 1];
  // Box indices keep the voxel order, so the lists stay increasing as squaredDistancesAt needs.
  const wholeVolume = boxDims[0] === w && boxDims[1] === h && boxDims[2] === dims[2];
  const toBox = (list: Int32Array): Int32Array => {
    if (wholeVolume) return list;
    const inBox = new Int32Array(list.length);
    for (let n = 0; n < list.length; n++) {
      const index = list[n];
      const x = index % w;
      const yz = (index - x) / w;
      const y = yz % h;
      const z = (yz - y) / h;
      inBox[n] = x - x0 + boxDims[0] * (y - y0 + boxDims[1] * (z - z0));
    }
    return inBox;
  };
  const aInBox = toBox(a);
  const bInBox = toBox(b);
  const squared = new Float64Array(a.length + b.length);
  squared.set(squaredDistancesAt(bInBox, aInBox, boxDims, spacing));
  squared.set(squaredDistancesAt(aInBox, bInBox, boxDims, spacing), a.length);
  return squared;
}

/**
 * numpy's linear percentile of map(values), for an increasing map, reordering `values`: a selection (expected
 * O(n)) finds the lower order statistic, the minimum of what lies above it is the upper one.
 */
function percentileInPlace(values: Float64Array, percent: number, map: (v: number) => number): number {
  if (values.length === 0) throw new RangeError('percentile of an empty set');
  if (!(percent >= 0 && percent <= 100)) throw new RangeError(`percent must lie in [0, 100], got ${percent}`);
  const n = values.length;
  const virtualIndex = (n - 1) * (percent / 100);
  const below = Math.floor(virtualIndex);
  const low = map(selectInPlace(values, below));
  let next = Infinity;
  for (let i = below + 1; i < n; i++) if (values[i] < next) next = values[i];
  const high = below + 1 < n ? map(next) : low;
  const t = virtualIndex - below;
  const difference = high - low;
  return t >= 0.5 ? high - difference * (1 - t) : low + difference * t;
}

/**
 * Hoare's selection (Wirth's variant, median-of-three pivot): afterwards values[k] is the k-th smallest, no
 * value before it is larger and none after it smaller. Runs of equal values (distances repeat a lot) split
 * evenly, since both scans stop on the pivot value.
 */
function selectInPlace(values: Float64Array, k: number): number {
  let left = 0;
  let right = values.length - 1;
  while (left < right) {
    const a = values[left];
    const b = values[(left + right) >>> 1];
    const c = values[right];
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
    let i = left;
    let j = right;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const swap = values[i];
        values[i] = values[j];
        values[j] = swap;
        i++;
        j--;
      }
    }
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else break;
  }
  return values[k];
}
