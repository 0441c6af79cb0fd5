// Volume helpers for the phantom: smooth random fields and a cheap separable blur, all on flat typed arrays
// indexed x + nx * (y + ny * z) like NIfTI, with no per-voxel allocation.

import type { Rng } from '../util/rng.js';

export type Dims3 = [number, number, number];

/** Cubic B-spline weights for one output position: lattice start index and its four weights. */
interface AxisTaps {
  start: Int32Array;
  weights: Float32Array;
}

function bsplineTaps(
  length: number,
  spacing: number,
  phase: number,
): { taps: AxisTaps; latticeLength: number } {
  const start = new Int32Array(length);
  const weights = new Float32Array(length * 4);
  let latticeLength = 0;
  for (let i = 0; i < length; i++) {
    const u = i / spacing + phase;
    const cell = Math.floor(u);
    const t = u - cell;
    const t2 = t * t;
    const t3 = t2 * t;
    start[i] = cell;
    weights[4 * i] = (1 - t) ** 3 / 6;
    weights[4 * i + 1] = (3 * t3 - 6 * t2 + 4) / 6;
    weights[4 * i + 2] = (-3 * t3 + 3 * t2 + 3 * t + 1) / 6;
    weights[4 * i + 3] = t3 / 6;
    latticeLength = cell + 4;
  }
  return { taps: { start, weights }, latticeLength };
}

/**
 * Resamples one axis of a (n0, n1, n2) array, x fastest, from lattice length to output length with B-spline
 * taps. Axis 0 is x, 1 is y, 2 is z.
 */
function resampleAxis(source: Float32Array, dims: Dims3, axis: 0 | 1 | 2, taps: AxisTaps, outLength: number) {
  const outDims: Dims3 = [dims[0], dims[1], dims[2]];
  outDims[axis] = outLength;
  const [ox, oy, oz] = outDims;
  const out = new Float32Array(ox * oy * oz);
  const { start, weights } = taps;
  if (axis === 0) {
    const inX = dims[0];
    for (let row = 0; row < oy * oz; row++) {
      const inRow = row * inX;
      const outRow = row * ox;
      for (let x = 0; x < ox; x++) {
        const s = inRow + start[x];
        const w = 4 * x;
        out[outRow + x] =
          weights[w] * source[s] +
          weights[w + 1] * source[s + 1] +
          weights[w + 2] * source[s + 2] +
          weights[w + 3] * source[s + 3];
      }
    }
    return out;
  }
  // For y and z whole rows (or planes) are combined at once, which keeps memory access contiguous.
  const block = axis === 1 ? ox : ox * oy;
  const outer = axis === 1 ? oz : 1;
  const inAxisLength = dims[axis];
  for (let o = 0; o < outer; o++) {
    const inBase = o * inAxisLength * block;
    const outBase = o * outLength * block;
    for (let k = 0; k < outLength; k++) {
      const w = 4 * k;
      const w0 = weights[w];
      const w1 = weights[w + 1];
      const w2 = weights[w + 2];
      const w3 = weights[w + 3];
      const s0 = inBase + start[k] * block;
      const s1 = s0 + block;
      const s2 = s1 + block;
      const s3 = s2 + block;
      const d = outBase + k * block;
      for (let i = 0; i < block; i++) {
        out[d + i] = w0 * source[s0 + i] + w1 * source[s1 + i] + w2 * source[s2 + i] + w3 * source[s3 + i];
      }
    }
  }
  return out;
}

/**
 * A smooth random field over a box: normal random values on a lattice with `spacing` voxels between knots,
 * interpolated by cubic B-splines (separable, so about 12 multiply-adds per voxel), then rescaled to mean 0 and
 * standard deviation 1 so callers state amplitudes directly.
 */
export function smoothNoiseField(rng: Rng, dims: Dims3, spacing: number): Float32Array {
  const step = Math.max(1, spacing);
  const axes = dims.map((length) => bsplineTaps(length, step, rng.next()));
  const lattice: Dims3 = [axes[0].latticeLength, axes[1].latticeLength, axes[2].latticeLength];
  let field = new Float32Array(lattice[0] * lattice[1] * lattice[2]);
  for (let i = 0; i < field.length; i++) field[i] = rng.normal();

  const current: Dims3 = [...lattice];
  for (const axis of [0, 1, 2] as const) {
    field = resampleAxis(field, current, axis, axes[axis].taps, dims[axis]);
    current[axis] = dims[axis];
  }

  let sum = 0;
  let sumSquares = 0;
  for (let i = 0; i < field.length; i++) {
    sum += field[i];
    sumSquares += field[i] * field[i];
  }
  const mean = sum / field.length;
  const sd = Math.sqrt(Math.max(sumSquares / field.length - mean * mean, 1e-12));
  for (let i = 0; i < field.length; i++) field[i] = (field[i] - mean) / sd;
  return field;
}

/**
 * In-place separable [1, 2, 1] / 4 blur on each axis (a binomial kernel, Gaussian sigma about 0.7 voxel), which
 * is enough to mimic partial volume at tissue boundaries. Values beyond the edges count as 0.
 */
export function binomialBlur3(volume: Float32Array, dims: Dims3): void {
  const [nx, ny, nz] = dims;
  for (let row = 0; row < ny * nz; row++) {
    const base = row * nx;
    let previous = 0;
    for (let x = 0; x < nx; x++) {
      const current = volume[base + x];
      const next = x + 1 < nx ? volume[base + x + 1] : 0;
      volume[base + x] = (previous + 2 * current + next) * 0.25;
      previous = current;
    }
  }
  blurStrided(volume, nx, ny, nz);
  blurStrided(volume, nx * ny, nz, 1);
}

/** Blurs along an axis whose step is `block` contiguous values, `count` long, repeated `outer` times. */
function blurStrided(volume: Float32Array, block: number, count: number, outer: number): void {
  const previous = new Float32Array(block);
  for (let o = 0; o < outer; o++) {
    const base = o * block * count;
    previous.fill(0);
    for (let k = 0; k < count; k++) {
      const here = base + k * block;
      const hasNext = k + 1 < count;
      for (let i = 0; i < block; i++) {
        const current = volume[here + i];
        const next = hasNext ? volume[here + block + i] : 0;
        volume[here + i] = (previous[i] + 2 * current + next) * 0.25;
        previous[i] = current;
      }
    }
  }
}
