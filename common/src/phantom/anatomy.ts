// The phantom's anatomy: a labelled tissue map of a skull-stripped brain with one glioma, on a crop around the
// brain. Shapes are implicit functions evaluated once per voxel; lengths are millimetres at the BraTS grid
// (240 x 240 x 155, 1 mm) times `scale`, so smaller test grids hold a proportionally smaller brain.

import type { Rng } from '../util/rng.js';
import { smoothNoiseField, type Dims3 } from './fields.js';

/** Tissue classes of the phantom's ground-truth map; tumour classes override normal tissue. */
export const Tissue = {
  Background: 0,
  Csf: 1,
  GreyMatter: 2,
  WhiteMatter: 3,
  /** Basal ganglia and thalami: grey matter with intensities between cortex and white matter. */
  DeepGrey: 4,
  Necrosis: 5,
  Edema: 6,
  Enhancing: 7,
} as const;
export type TissueClass = (typeof Tissue)[keyof typeof Tissue];
export const TISSUE_CLASS_COUNT = 8;

export interface Box {
  origin: Dims3;
  dims: Dims3;
}

export interface Anatomy {
  /** Where the crop lies in the full grid; everything outside it is background. */
  crop: Box;
  /** Tissue classes over the crop, x fastest. */
  tissue: Uint8Array;
  /** A smooth unit-variance field over the crop, for within-tissue heterogeneity. */
  texture: Float32Array;
  /** Brain centre (crop voxels) and semi-axes, for the bias field's coordinates. */
  centre: Dims3;
  semiAxes: Dims3;
  tumour: TumourSummary;
}

export interface TumourSummary {
  centre: Dims3;
  /** Radii in voxels of the whole lesion (oedema), the tumour core and the necrotic core (0 when absent). */
  totalRadius: number;
  coreRadius: number;
  necrosisRadius: number;
}

const clamp = (value: number, low: number, high: number) => (value < low ? low : value > high ? high : value);

/** The grid's size relative to BraTS's 240 x 240 x 155 mm, which sets the phantom's physical scale. */
export function anatomyScale(dims: Dims3): number {
  return Math.min(dims[0] / 240, dims[1] / 240, dims[2] / 155);
}

interface BrainShape {
  centre: Dims3;
  semiAxes: Dims3;
  /** Inferior semi-axis (the brain is flatter below its centre). */
  inferiorSemiAxis: number;
  /** Width grows posteriorly by this fraction of the A–P coordinate. */
  posteriorWidening: number;
  /** Surface perturbation in units of the normalised radius, per unit of the noise field. */
  surfaceAmplitude: number;
}

// The noise field is clamped so the surface moves at most this many amplitudes.
const SURFACE_NOISE_LIMIT = 2.5;

function chooseBrainShape(rng: Rng, dims: Dims3, scale: number): BrainShape {
  const surfaceAmplitude = rng.uniform(0.025, 0.04);
  const posteriorWidening = rng.uniform(0.04, 0.09);
  const semiAxes: Dims3 = [
    71 * scale * rng.uniform(0.94, 1.06),
    87 * scale * rng.uniform(0.94, 1.06),
    62 * scale * rng.uniform(0.94, 1.06),
  ];
  const centre: Dims3 = [
    (dims[0] - 1) / 2 + rng.uniform(-2, 2) * scale,
    (dims[1] - 1) / 2 + rng.uniform(-2, 2) * scale,
    (dims[2] - 1) / 2 + rng.uniform(-2, 2) * scale,
  ];
  // Shrink if the widest possible surface would come closer than 3 voxels to the grid's edge.
  const growth = 1 + SURFACE_NOISE_LIMIT * surfaceAmplitude;
  const reach = [
    semiAxes[0] * growth * (1 + 1.2 * posteriorWidening),
    semiAxes[1] * growth,
    semiAxes[2] * growth,
  ];
  let fit = 1;
  for (let axis = 0; axis < 3; axis++) {
    const room = Math.min(centre[axis], dims[axis] - 1 - centre[axis]) - 3;
    fit = Math.min(fit, room / reach[axis]);
  }
  if (fit <= 0) throw new Error(`phantom grid ${dims.join('x')} is too small for a brain`);
  for (let axis = 0; axis < 3; axis++) semiAxes[axis] *= Math.min(1, fit);
  return {
    centre,
    semiAxes,
    inferiorSemiAxis: semiAxes[2] * rng.uniform(0.8, 0.9),
    posteriorWidening,
    surfaceAmplitude,
  };
}

function cropAround(shape: BrainShape, dims: Dims3): Box {
  const growth = 1 + SURFACE_NOISE_LIMIT * shape.surfaceAmplitude;
  const origin: Dims3 = [0, 0, 0];
  const size: Dims3 = [0, 0, 0];
  for (let axis = 0; axis < 3; axis++) {
    const widen = axis === 0 ? 1 + 1.2 * shape.posteriorWidening : 1;
    const reach = shape.semiAxes[axis] * growth * widen + 2;
    const low = Math.max(0, Math.floor(shape.centre[axis] - reach));
    const high = Math.min(dims[axis] - 1, Math.ceil(shape.centre[axis] + reach));
    origin[axis] = low;
    size[axis] = high - low + 1;
  }
  return { origin, dims: size };
}

/**
 * The brain's level function over the crop: below 1 inside. It is the normalised radius of an egg-shaped
 * ellipsoid (wider at the back, flatter below) plus a low-frequency perturbation of the surface.
 */
function brainLevel(rng: Rng, shape: BrainShape, crop: Box, scale: number): Float32Array {
  const [nx, ny, nz] = crop.dims;
  const surfaceNoise = smoothNoiseField(rng, crop.dims, Math.max(4, 30 * scale));
  const level = surfaceNoise; // overwritten in place: each voxel reads its own noise value first
  const [cx, cy, cz] = shape.centre.map((c, axis) => c - crop.origin[axis]);
  const [a, b, c] = shape.semiAxes;
  const cLow = shape.inferiorSemiAxis;
  for (let z = 0; z < nz; z++) {
    const dz = z - cz;
    const zn = dz / (dz < 0 ? cLow : c);
    for (let y = 0; y < ny; y++) {
      const yn = (y - cy) / b;
      const width = a * (1 + shape.posteriorWidening * clamp(yn, -1.2, 1.2));
      const rowBase = nx * (y + ny * z);
      const yz2 = yn * yn + zn * zn;
      for (let x = 0; x < nx; x++) {
        const xn = (x - cx) / width;
        const i = rowBase + x;
        const perturbation = clamp(surfaceNoise[i], -SURFACE_NOISE_LIMIT, SURFACE_NOISE_LIMIT);
        level[i] = Math.sqrt(xn * xn + yz2) + shape.surfaceAmplitude * perturbation;
      }
    }
  }
  return level;
}

/** Approximate depth below the outer brain surface in voxels: (1 - level) / |grad level|. */
function outerDepthAt(level: Float32Array, dims: Dims3, x: number, y: number, z: number): number {
  const [nx, ny, nz] = dims;
  if (x < 1 || y < 1 || z < 1 || x >= nx - 1 || y >= ny - 1 || z >= nz - 1) return 0;
  const i = x + nx * (y + ny * z);
  const plane = nx * ny;
  const gx = level[i + 1] - level[i - 1];
  const gy = level[i + nx] - level[i - nx];
  const gz = level[i + plane] - level[i - plane];
  const gradient = 0.5 * Math.sqrt(gx * gx + gy * gy + gz * gz);
  return gradient > 1e-6 ? (1 - level[i]) / gradient : 0;
}

interface CortexParameters {
  /** Surface CSF thickness, and half-width of the interhemispheric fissure (voxels). */
  csfThickness: number;
  greyThickness: number;
  /** Half-width of the CSF inside a sulcus. */
  sulcusHalfWidth: number;
  /** Typical sulcus depth below the surface CSF; varies along the surface. */
  sulcusDepth: number;
  midlineBend: number;
}

/** Trilinear sample of a crop-sized field at a fractional position, clamped to the crop. */
function sampleField(field: Float32Array, dims: Dims3, x: number, y: number, z: number): number {
  const [nx, ny, nz] = dims;
  x = clamp(x, 0, nx - 1.001);
  y = clamp(y, 0, ny - 1.001);
  z = clamp(z, 0, nz - 1.001);
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const z0 = Math.floor(z);
  const fx = x - x0;
  const fy = y - y0;
  const fz = z - z0;
  const i = x0 + nx * (y0 + ny * z0);
  const plane = nx * ny;
  const c00 = field[i] + fx * (field[i + 1] - field[i]);
  const c10 = field[i + nx] + fx * (field[i + nx + 1] - field[i + nx]);
  const c01 = field[i + plane] + fx * (field[i + plane + 1] - field[i + plane]);
  const c11 = field[i + plane + nx] + fx * (field[i + plane + nx + 1] - field[i + plane + nx]);
  const c0 = c00 + fy * (c10 - c00);
  const c1 = c01 + fy * (c11 - c01);
  return c0 + fz * (c1 - c0);
}

/** Mean gradient magnitude of a smooth field, from central differences at random interior voxels. */
function meanGradient(rng: Rng, field: Float32Array, dims: Dims3): number {
  const [nx, ny, nz] = dims;
  const plane = nx * ny;
  let sum = 0;
  const samples = 4096;
  for (let k = 0; k < samples; k++) {
    const i = 1 + rng.int(nx - 2) + nx * (1 + rng.int(ny - 2) + ny * (1 + rng.int(nz - 2)));
    const gx = field[i + 1] - field[i - 1];
    const gy = field[i + nx] - field[i - nx];
    const gz = field[i + plane] - field[i - plane];
    sum += 0.5 * Math.sqrt(gx * gx + gy * gy + gz * gz);
  }
  return sum / samples;
}

/**
 * Labels normal tissue. White matter inside; cortex as a grey ribbon under a thin CSF layer along the outer
 * surface and the interhemispheric fissure; sulci as CSF sheets perpendicular to the surface, lined with grey
 * matter, so the grey/white boundary folds into gyri; deep grey nuclei; two curved lateral ventricles.
 *
 * Sulci follow the zero set of a smooth field sampled at each voxel's projection onto the surface (radially
 * from the centre), so they run roughly straight down from the surface.
 * |field| / |gradient| approximates the distance to the sulcus' mid-plane, and the tissue class follows from
 * the distance to the nearest CSF (surface layer or sulcus): CSF below 0, grey matter below its thickness.
 */
function labelNormalTissue(
  rng: Rng,
  level: Float32Array,
  shape: BrainShape,
  crop: Box,
  scale: number,
  tissue: Uint8Array,
): void {
  const [nx, ny, nz] = crop.dims;
  const plane = nx * ny;
  const [cx, cy, cz] = shape.centre.map((c, axis) => c - crop.origin[axis]);
  const [a, b, c] = shape.semiAxes;
  const cLow = shape.inferiorSemiAxis;
  const cortex: CortexParameters = {
    csfThickness: Math.max(0.9, 1.3 * scale * rng.uniform(0.8, 1.3)),
    greyThickness: Math.max(1.5, 3.2 * scale * rng.uniform(0.85, 1.15)),
    sulcusHalfWidth: Math.max(0.5, 1 * scale),
    sulcusDepth: Math.max(2, 13 * scale * rng.uniform(0.8, 1.2)),
    midlineBend: rng.uniform(-2, 2) * scale,
  };
  const gyralSpacing = Math.max(2.5, 4.5 * scale);
  const gyri = smoothNoiseField(rng.fork('gyri'), crop.dims, gyralSpacing);
  // The projected field varies only along the surface: two of the three gradient components remain.
  const gyralGradient = meanGradient(rng.fork('gradient'), gyri, crop.dims) * Math.sqrt(2 / 3);
  // A second, decorrelated sample of the same field modulates sulcus depth, so some sulci fade out.
  const depthShift = 3.7 * gyralSpacing;
  const surfaceFraction = 0.92;
  const sulcusBend = 0.35;
  const cortexBand = cortex.csfThickness + cortex.sulcusDepth * 1.2 + cortex.greyThickness + 1;

  // Lateral ventricles: banana-shaped tubes along A–P, diverging and curving down at both ends.
  const ventricleSize = rng.uniform(0.7, 1.35);
  const ventricleHalfLength = 30 * scale * Math.sqrt(ventricleSize);
  const ventricleCentreY = cy + rng.uniform(-4, 2) * scale;
  const ventricleMidZ = cz + 6 * scale;
  const ventricleWidth = Math.max(1.2, 5.5 * scale * ventricleSize);
  const ventricleHeight = Math.max(1.2, 6 * scale * ventricleSize);
  const ventricleAsymmetry = rng.uniform(0.85, 1.15);

  // Deep grey nuclei: one ellipsoid per hemisphere, lateral to and below the ventricles.
  const deepOffsetX = 15 * scale;
  const deepCentreY = cy + 2 * scale;
  const deepCentreZ = cz - 5 * scale;
  const deepRadii = [8, 15, 9].map((r) => Math.max(1.2, r * scale * rng.uniform(0.9, 1.1)));

  for (let z = 1; z < nz - 1; z++) {
    const dz = z - cz;
    const zn = dz / (dz < 0 ? cLow : c);
    for (let y = 1; y < ny - 1; y++) {
      const yn = (y - cy) / b;
      const width = a * (1 + shape.posteriorWidening * clamp(yn, -1.2, 1.2));
      const yz2 = yn * yn + zn * zn;
      const midline = cx + cortex.midlineBend * yn * yn;
      // Below this height the fissure gives way to the corpus callosum; at the poles it cuts right through.
      const fissureFloor = 0.32 - 1.5 * Math.max(0, Math.abs(yn) - 0.4);
      const fissureFloorDistance = (fissureFloor - zn) * c;

      const yv = (y - ventricleCentreY) / ventricleHalfLength;
      const yv2 = yv * yv;
      const inVentricleSpan = yv2 < 1;
      const ventricleCentreX = (yv > 0 ? 9 : 4) * scale * yv2 + 3.5 * scale;
      const ventricleCentreZ = ventricleMidZ - (yv > 0 ? 14 : 6) * scale * yv2;
      const ventricleTaper = 1 - 0.35 * yv2;

      const yd = (y - deepCentreY) / deepRadii[1];
      const zd = (z - deepCentreZ) / deepRadii[2];
      const deepYZ = yd * yd + zd * zd;

      const rowBase = nx * (y + ny * z);
      for (let x = 1; x < nx - 1; x++) {
        const i = rowBase + x;
        const levelHere = level[i];
        if (levelHere >= 1) continue;

        const gx = level[i + 1] - level[i - 1];
        const gy = level[i + nx] - level[i - nx];
        const gz = level[i + plane] - level[i - plane];
        const outerDepth = (1 - levelHere) / (0.5 * Math.sqrt(gx * gx + gy * gy + gz * gz) + 1e-6);
        const fissureDepth = Math.max(Math.abs(x - midline), fissureFloorDistance);

        let label: number = Tissue.WhiteMatter;
        const depth = outerDepth < fissureDepth ? outerDepth : fissureDepth;
        if (depth < cortexBand) {
          // Sulci only on the convexity; the medial surface keeps a smooth ribbon along the fissure.
          let fromSulcus = Infinity;
          if (outerDepth <= fissureDepth) {
            const xn = (x - cx) / width;
            const toSurface = surfaceFraction / Math.max(Math.sqrt(xn * xn + yz2), 0.05);
            const px = cx + (x - cx) * toSurface;
            const py = cy + (y - cy) * toSurface;
            const pz = cz + dz * toSurface;
            // A little of the unprojected field bends the sulci as they go down.
            const g = sampleField(gyri, crop.dims, px, py, pz) + sulcusBend * gyri[i];
            const h = sampleField(gyri, crop.dims, px + depthShift, py - depthShift, pz + depthShift);
            const sulcusBottom = cortex.csfThickness + cortex.sulcusDepth * clamp(0.75 + 0.45 * h, 0, 1.2);
            const fromSulcusPlane = Math.abs(g) / gyralGradient;
            const belowBottom = depth - sulcusBottom;
            fromSulcus =
              (belowBottom > 0
                ? Math.sqrt(fromSulcusPlane * fromSulcusPlane + belowBottom * belowBottom)
                : fromSulcusPlane) - cortex.sulcusHalfWidth;
          }
          const fromSurfaceCsf = depth - cortex.csfThickness;
          const fromCsf = fromSulcus < fromSurfaceCsf ? fromSulcus : fromSurfaceCsf;
          if (fromCsf < 0) label = Tissue.Csf;
          else if (fromCsf < cortex.greyThickness) label = Tissue.GreyMatter;
        }

        if (label === Tissue.WhiteMatter) {
          const xd = (Math.abs(x - cx) - deepOffsetX) / deepRadii[0];
          if (xd * xd + deepYZ < 1) label = Tissue.DeepGrey;
        }
        if (inVentricleSpan) {
          const side = x < cx ? ventricleAsymmetry : 1;
          const vx = (Math.abs(x - cx) - ventricleCentreX * side) / (ventricleWidth * side * ventricleTaper);
          const vz = (z - ventricleCentreZ) / (ventricleHeight * ventricleTaper);
          if (vx * vx + vz * vz + yv2 < 1) label = Tissue.Csf;
        }
        tissue[i] = label;
      }
    }
  }
}

/** A random rotation (from a uniform unit quaternion) followed by per-axis scaling, as a row-major 3x3. */
function randomShapeMatrix(rng: Rng, minStretch: number, maxStretch: number): Float64Array {
  let [w, x, y, z] = [rng.normal(), rng.normal(), rng.normal(), rng.normal()];
  const norm = Math.hypot(w, x, y, z) || 1;
  [w, x, y, z] = [w / norm, x / norm, y / norm, z / norm];
  const rotation = [
    [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ];
  const matrix = new Float64Array(9);
  for (let row = 0; row < 3; row++) {
    const inverseStretch = 1 / rng.uniform(minStretch, maxStretch);
    for (let col = 0; col < 3; col++) matrix[3 * row + col] = rotation[row][col] * inverseStretch;
  }
  return matrix;
}

interface TumourPlan {
  totalRadius: number;
  coreRadius: number;
  necrosisRadius: number;
  coreShape: Float64Array;
  edemaShape: Float64Array;
  edemaOffset: Dims3;
}

const CORE_NOISE = 0.15;
const NECROSIS_NOISE = 0.2;
const EDEMA_NOISE = 0.2;
const TUMOUR_NOISE_LIMIT = 2;
const MAX_STRETCH = 1.25;

function planTumour(rng: Rng, scale: number, brainRadius: number): TumourPlan {
  // Skewed towards large lesions: BraTS gliomas are mostly big (whole tumour often 50-150 ml). The voxel
  // minimums keep all classes visible on small grids; the brain-relative caps matter only on tiny ones.
  const maxRadius = Math.min(Math.max(35 * scale, 8), 0.7 * brainRadius);
  const minRadius = Math.min(Math.max(10 * scale, 5), 0.6 * maxRadius);
  const totalRadius = minRadius + (maxRadius - minRadius) * Math.sqrt(rng.next());
  const coreRadius = Math.max(Math.min(2.5, 0.5 * totalRadius), totalRadius * rng.uniform(0.35, 0.6));
  const rim = Math.max(1.5, rng.uniform(2, 4.5) * scale);
  // About a sixth of cases have no necrotic core and another sixth a small one, as in real gliomas.
  const necrosisMode = rng.next();
  let necrosisRadius = coreRadius - rim;
  if (necrosisMode < 1 / 6) necrosisRadius = 0;
  else if (necrosisMode < 1 / 3) necrosisRadius *= 0.4;
  if (necrosisRadius < 1) necrosisRadius = 0;
  const direction = [rng.normal(), rng.normal(), rng.normal()];
  const offset = (rng.uniform(0, 0.25) * totalRadius) / (Math.hypot(...direction) || 1);
  return {
    totalRadius,
    coreRadius,
    necrosisRadius,
    coreShape: randomShapeMatrix(rng, 0.8, MAX_STRETCH),
    edemaShape: randomShapeMatrix(rng, 0.8, MAX_STRETCH),
    edemaOffset: [direction[0] * offset, direction[1] * offset, direction[2] * offset],
  };
}

function coreReach(plan: TumourPlan): number {
  return plan.coreRadius * MAX_STRETCH * (1 + TUMOUR_NOISE_LIMIT * CORE_NOISE);
}

function edemaReach(plan: TumourPlan): number {
  return (
    Math.hypot(...plan.edemaOffset) + plan.totalRadius * MAX_STRETCH * (1 + TUMOUR_NOISE_LIMIT * EDEMA_NOISE)
  );
}

/**
 * Picks a white-matter centre deep enough that the whole tumour core lies inside the brain, shrinking the lesion
 * if a small or crowded brain leaves no room; on tiny grids, falls back to the deepest brain voxel with a core
 * made to fit there.
 */
function placeTumour(rng: Rng, level: Float32Array, tissue: Uint8Array, crop: Box, plan: TumourPlan): Dims3 {
  const [nx, ny, nz] = crop.dims;
  for (let attempt = 0; attempt < 2000; attempt++) {
    if (attempt > 0 && attempt % 200 === 0) scaleTumour(plan, 0.9);
    const x = 1 + rng.int(nx - 2);
    const y = 1 + rng.int(ny - 2);
    const z = 1 + rng.int(nz - 2);
    const i = x + nx * (y + ny * z);
    if (tissue[i] !== Tissue.WhiteMatter) continue;
    if (outerDepthAt(level, crop.dims, x, y, z) < coreReach(plan) + 2) continue;
    return [x, y, z];
  }

  let deepest: Dims3 = [nx >> 1, ny >> 1, nz >> 1];
  let deepestDepth = -Infinity;
  for (let z = 1; z < nz - 1; z++) {
    for (let y = 1; y < ny - 1; y++) {
      for (let x = 1; x < nx - 1; x++) {
        if (tissue[x + nx * (y + ny * z)] === Tissue.Background) continue;
        const depth = outerDepthAt(level, crop.dims, x, y, z);
        if (depth > deepestDepth) [deepest, deepestDepth] = [[x, y, z], depth];
      }
    }
  }
  const fit = (Math.max(deepestDepth, 2) - 1) / coreReach(plan);
  if (fit < 1) scaleTumour(plan, fit);
  return deepest;
}

function scaleTumour(plan: TumourPlan, factor: number): void {
  plan.totalRadius *= factor;
  plan.coreRadius *= factor;
  plan.necrosisRadius = plan.necrosisRadius * factor < 1 ? 0 : plan.necrosisRadius * factor;
  for (let axis = 0; axis < 3; axis++) plan.edemaOffset[axis] *= factor;
}

function boxAround(centre: Dims3, reach: number, dims: Dims3): Box {
  const origin: Dims3 = [0, 0, 0];
  const size: Dims3 = [0, 0, 0];
  for (let axis = 0; axis < 3; axis++) {
    const low = Math.max(0, Math.floor(centre[axis] - reach - 1));
    const high = Math.min(dims[axis] - 1, Math.ceil(centre[axis] + reach + 1));
    origin[axis] = low;
    size[axis] = high - low + 1;
  }
  return { origin, dims: size };
}

/** Length of shape * (dx, dy, dz). */
function shapedLength(m: Float64Array, dx: number, dy: number, dz: number): number {
  const u = m[0] * dx + m[1] * dy + m[2] * dz;
  const v = m[3] * dx + m[4] * dy + m[5] * dz;
  const w = m[6] * dx + m[7] * dy + m[8] * dz;
  return Math.sqrt(u * u + v * v + w * w);
}

/**
 * Paints the lesion over normal tissue inside the brain: an irregular core whose outer shell (at least a voxel
 * or so) enhances around a necrotic centre, and a larger irregular oedema that infiltrates white matter and deep
 * grey, reaches less far into cortex and leaves CSF alone.
 */
function paintTumour(rng: Rng, tissue: Uint8Array, crop: Box, plan: TumourPlan, centre: Dims3): void {
  const [nx, ny] = crop.dims;
  const [tx, ty, tz] = centre;

  const edemaBox = boxAround(centre, edemaReach(plan), crop.dims);
  const edemaNoise = smoothNoiseField(
    rng.fork('edema'),
    edemaBox.dims,
    Math.max(2.5, plan.totalRadius * 0.5),
  );
  const [ex, ey, ez] = [tx + plan.edemaOffset[0], ty + plan.edemaOffset[1], tz + plan.edemaOffset[2]];
  forEachInBox(edemaBox, nx, ny, (i, local, x, y, z) => {
    const label = tissue[i];
    if (label === Tissue.Background || label === Tissue.Csf) return;
    const noise = clamp(edemaNoise[local], -TUMOUR_NOISE_LIMIT, TUMOUR_NOISE_LIMIT);
    const distance =
      shapedLength(plan.edemaShape, x - ex, y - ey, z - ez) / (plan.totalRadius * (1 + EDEMA_NOISE * noise));
    if (distance <= (label === Tissue.GreyMatter ? 0.65 : 1)) tissue[i] = Tissue.Edema;
  });

  const coreBox = boxAround(centre, coreReach(plan), crop.dims);
  const coreNoise = smoothNoiseField(rng.fork('core'), coreBox.dims, Math.max(2, plan.coreRadius * 0.6));
  const necrosisNoise = smoothNoiseField(
    rng.fork('necrosis'),
    coreBox.dims,
    Math.max(2, plan.necrosisRadius * 0.6),
  );
  forEachInBox(coreBox, nx, ny, (i, local, x, y, z) => {
    if (tissue[i] === Tissue.Background) return;
    const length = shapedLength(plan.coreShape, x - tx, y - ty, z - tz);
    const coreNoiseHere = clamp(coreNoise[local], -TUMOUR_NOISE_LIMIT, TUMOUR_NOISE_LIMIT);
    const coreDistance = length / (plan.coreRadius * (1 + CORE_NOISE * coreNoiseHere));
    if (coreDistance > 1) return;
    let label: number = Tissue.Enhancing;
    if (plan.necrosisRadius > 0 && (coreDistance - 1) * plan.coreRadius <= -1) {
      const necrosisNoiseHere = clamp(necrosisNoise[local], -TUMOUR_NOISE_LIMIT, TUMOUR_NOISE_LIMIT);
      if (length <= plan.necrosisRadius * (1 + NECROSIS_NOISE * necrosisNoiseHere)) label = Tissue.Necrosis;
    }
    tissue[i] = label;
  });
}

/** Visits every voxel of `box` (in crop coordinates) with its crop index and its index inside the box. */
function forEachInBox(
  box: Box,
  nx: number,
  ny: number,
  visit: (cropIndex: number, boxIndex: number, x: number, y: number, z: number) => void,
): void {
  const [bx, by, bz] = box.dims;
  const [ox, oy, oz] = box.origin;
  let local = 0;
  for (let z = oz; z < oz + bz; z++) {
    for (let y = oy; y < oy + by; y++) {
      const rowBase = nx * (y + ny * z);
      for (let x = ox; x < ox + bx; x++) visit(rowBase + x, local++, x, y, z);
    }
  }
}

export function buildAnatomy(rng: Rng, dims: Dims3): Anatomy {
  const scale = anatomyScale(dims);
  const shape = chooseBrainShape(rng.fork('brain'), dims, scale);
  const crop = cropAround(shape, dims);
  const level = brainLevel(rng.fork('surface'), shape, crop, scale);
  const tissue = new Uint8Array(crop.dims[0] * crop.dims[1] * crop.dims[2]);
  labelNormalTissue(rng.fork('tissue'), level, shape, crop, scale, tissue);

  const tumourRng = rng.fork('tumour');
  const plan = planTumour(tumourRng, scale, Math.min(...shape.semiAxes));
  const tumourCentre = placeTumour(tumourRng.fork('place'), level, tissue, crop, plan);
  paintTumour(tumourRng, tissue, crop, plan, tumourCentre);

  const texture = smoothNoiseField(rng.fork('texture'), crop.dims, Math.max(2, 3.5 * scale));
  return {
    crop,
    tissue,
    texture,
    centre: shape.centre.map((c, axis) => c - crop.origin[axis]) as Dims3,
    semiAxes: shape.semiAxes,
    tumour: {
      centre: tumourCentre.map((c, axis) => c + crop.origin[axis]) as Dims3,
      totalRadius: plan.totalRadius,
      coreRadius: plan.coreRadius,
      necrosisRadius: plan.necrosisRadius,
    },
  };
}
