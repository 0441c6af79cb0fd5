// Shared by the metrics specs: brute-force references written straight from the definitions (no distance
// transform, no bounding boxes), a seeded random source, and synthetic tumour volumes.
import type { VolumeDims, VoxelSpacing } from './distance-transform.js';

/** mulberry32: a small seeded generator, so a failing random case can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomInt(random: () => number, low: number, high: number): number {
  return low + Math.floor(random() * (high - low + 1));
}

/** A binary mask with each voxel inside with probability `density`. */
export function randomMask(random: () => number, voxels: number, density: number): Uint8Array {
  return Uint8Array.from({ length: voxels }, () => (random() < density ? 1 : 0));
}

/** A binary mask made of a few random axis-aligned boxes: shapes with interiors, unlike voxel noise. */
export function randomBoxesMask(random: () => number, dims: VolumeDims, boxes: number): Uint8Array {
  const [w, h, d] = dims;
  const mask = new Uint8Array(w * h * d);
  for (let n = 0; n < boxes; n++) {
    const [x0, x1] = [randomInt(random, 0, w - 1), randomInt(random, 0, w - 1)].sort((p, q) => p - q);
    const [y0, y1] = [randomInt(random, 0, h - 1), randomInt(random, 0, h - 1)].sort((p, q) => p - q);
    const [z0, z1] = [randomInt(random, 0, d - 1), randomInt(random, 0, d - 1)].sort((p, q) => p - q);
    for (let z = z0; z <= z1; z++) {
      for (let y = y0; y <= y1; y++) mask.fill(1, x0 + w * (y + h * z), x1 + 1 + w * (y + h * z));
    }
  }
  return mask;
}

export function randomSpacing(random: () => number): [number, number, number] {
  return [0.3 + 3.7 * random(), 0.3 + 3.7 * random(), 0.3 + 3.7 * random()];
}

/** Squared distance from every voxel to the nearest site, by trying every site; summed x, y, z like the EDT. */
export function bruteForceSquaredDistances(
  sites: Uint8Array,
  dims: VolumeDims,
  spacing: VoxelSpacing,
): Float64Array {
  const points = coordinatesOf(sites, dims);
  const out = new Float64Array(sites.length).fill(Infinity);
  forEachVoxel(dims, (x, y, z, i) => {
    for (const [px, py, pz] of points) out[i] = Math.min(out[i], squaredMm(x - px, y - py, z - pz, spacing));
  });
  return out;
}

/** Surface voxels by the definition: inside, with a face neighbour outside the mask or outside the volume. */
export function bruteForceSurface(mask: Uint8Array, dims: VolumeDims): [number, number, number][] {
  const [w, h, d] = dims;
  const inside = (x: number, y: number, z: number): boolean =>
    x >= 0 && y >= 0 && z >= 0 && x < w && y < h && z < d && mask[x + w * (y + h * z)] !== 0;
  const surface: [number, number, number][] = [];
  forEachVoxel(dims, (x, y, z) => {
    if (!inside(x, y, z)) return;
    const neighbours = [
      [x - 1, y, z],
      [x + 1, y, z],
      [x, y - 1, z],
      [x, y + 1, z],
      [x, y, z - 1],
      [x, y, z + 1],
    ];
    if (neighbours.some(([nx, ny, nz]) => !inside(nx, ny, nz))) surface.push([x, y, z]);
  });
  return surface;
}

/** medpy's hd95 by brute force: every surface voxel against every surface voxel, numpy's percentile. */
export function bruteForceHd95(
  a: Uint8Array,
  b: Uint8Array,
  dims: VolumeDims,
  spacing: VoxelSpacing,
): number {
  const surfaceA = bruteForceSurface(a, dims);
  const surfaceB = bruteForceSurface(b, dims);
  const directed = (from: [number, number, number][], to: [number, number, number][]): number[] =>
    from.map(([x, y, z]) =>
      Math.sqrt(Math.min(...to.map(([tx, ty, tz]) => squaredMm(x - tx, y - ty, z - tz, spacing)))),
    );
  const all = [...directed(surfaceA, surfaceB), ...directed(surfaceB, surfaceA)].sort((p, q) => p - q);
  // numpy.percentile, method 'linear': virtual index (n - 1)·q between two order statistics.
  const index = (all.length - 1) * 0.95;
  const below = Math.floor(index);
  const above = Math.min(below + 1, all.length - 1);
  return all[below] + (all[above] - all[below]) * (index - below);
}

/**
 * A tumour-like label volume: a lumpy ellipsoid of oedema (2) around an enhancing rim (3) around a necrotic
 * core (1), its radius modulated by a few random low-frequency waves over the direction from the centre.
 */
export function syntheticTumour(
  dims: VolumeDims,
  centre: [number, number, number],
  radius: number,
  seed: number,
): Uint8Array {
  const random = seededRandom(seed);
  const waves = Array.from({ length: 5 }, () => {
    const [u, v, s] = [random() * 2 - 1, random() * 2 - 1, random() * 2 - 1];
    const norm = Math.hypot(u, v, s) || 1;
    return { axis: [u / norm, v / norm, s / norm], frequency: 2 + 4 * random(), phase: 6.28 * random() };
  });
  const labels = new Uint8Array(dims[0] * dims[1] * dims[2]);
  forEachVoxel(dims, (x, y, z, i) => {
    const [dx, dy, dz] = [x - centre[0], y - centre[1], (z - centre[2]) * 1.3];
    const distance = Math.hypot(dx, dy, dz);
    if (distance > radius * 1.6) return;
    const direction = distance === 0 ? [1, 0, 0] : [dx / distance, dy / distance, dz / distance];
    let lumps = 1;
    for (const { axis, frequency, phase } of waves) {
      const along = axis[0] * direction[0] + axis[1] * direction[1] + axis[2] * direction[2];
      lumps += 0.08 * Math.sin(frequency * along + phase);
    }
    const rho = distance / (radius * lumps);
    labels[i] = rho <= 0.3 ? 1 : rho <= 0.5 ? 3 : rho <= 1 ? 2 : 0;
  });
  return labels;
}

function squaredMm(dx: number, dy: number, dz: number, spacing: VoxelSpacing): number {
  const [mx, my, mz] = [spacing[0] * dx, spacing[1] * dy, spacing[2] * dz];
  return mx * mx + my * my + mz * mz;
}

function coordinatesOf(mask: Uint8Array, dims: VolumeDims): [number, number, number][] {
  const points: [number, number, number][] = [];
  forEachVoxel(dims, (x, y, z, i) => {
    if (mask[i] !== 0) points.push([x, y, z]);
  });
  return points;
}

function forEachVoxel(
  dims: VolumeDims,
  visit: (x: number, y: number, z: number, index: number) => void,
): void {
  const [w, h, d] = dims;
  let i = 0;
  for (let z = 0; z < d; z++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) visit(x, y, z, i);
    }
  }
}
