// Quaternion <-> matrix conversions of the NIfTI qform, ported from nifti1_io.c (nifti_quatern_to_mat44 and
// nifti_mat44_to_quatern) so that files agree with the reference library and nibabel.

export interface Qform {
  quaternB: number;
  quaternC: number;
  quaternD: number;
  qoffset: [number, number, number];
  /** Voxel sizes, pixdim[1..3]. */
  spacing: [number, number, number];
  /** pixdim[0]: -1 flips the third axis (left-handed grids), anything else means 1. */
  qfac: number;
}

export function qformToAffine(q: Qform): number[][] {
  let [a, b, c, d] = [0, q.quaternB, q.quaternC, q.quaternD];
  const bcd = b * b + c * c + d * d;
  if (1 - bcd < 1e-7) {
    // a rotation of 180 degrees: a is 0 and (b, c, d) is renormalized, as nifti1_io does
    const norm = 1 / Math.sqrt(bcd);
    [b, c, d] = [b * norm, c * norm, d * norm];
  } else {
    a = Math.sqrt(1 - bcd);
  }
  // non-positive voxel sizes are meaningless here; nifti1_io uses 1
  const [dx, dy, dz] = q.spacing.map((size) => (size > 0 ? size : 1));
  const zScale = q.qfac < 0 ? -dz : dz;
  const rotation = [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
  return [
    ...rotation.map((row, i) => [row[0] * dx, row[1] * dy, row[2] * zScale, q.qoffset[i]]),
    [0, 0, 0, 1],
  ];
}

/** The qform closest to an affine: voxel sizes from its column lengths, rotation from its orthogonal part. */
export function affineToQform(affine: number[][]): Qform {
  const columns = [0, 1, 2].map((j) => [affine[0][j], affine[1][j], affine[2][j]]);
  const spacing = columns.map((col) => Math.hypot(...col)) as [number, number, number];
  if (spacing.some((size) => !(size > 0) || !Number.isFinite(size))) {
    throw new RangeError(`affine has a zero or non-finite column: ${JSON.stringify(affine)}`);
  }
  const normalized = [0, 1, 2].map((i) => [0, 1, 2].map((j) => columns[j][i] / spacing[j]));
  const rotation = closestOrthogonal(normalized);
  let qfac = 1;
  if (determinant3(rotation) < 0) {
    qfac = -1;
    for (const row of rotation) row[2] = -row[2];
  }
  const [[r11, r12, r13], [r21, r22, r23], [r31, r32, r33]] = rotation;
  let a = r11 + r22 + r33 + 1;
  let b: number, c: number, d: number;
  if (a > 0.5) {
    a = 0.5 * Math.sqrt(a);
    b = (0.25 * (r32 - r23)) / a;
    c = (0.25 * (r13 - r31)) / a;
    d = (0.25 * (r21 - r12)) / a;
  } else {
    const xd = 1 + r11 - (r22 + r33);
    const yd = 1 + r22 - (r11 + r33);
    const zd = 1 + r33 - (r11 + r22);
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd);
      c = (0.25 * (r12 + r21)) / b;
      d = (0.25 * (r13 + r31)) / b;
      a = (0.25 * (r32 - r23)) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd);
      b = (0.25 * (r12 + r21)) / c;
      d = (0.25 * (r23 + r32)) / c;
      a = (0.25 * (r13 - r31)) / c;
    } else {
      d = 0.5 * Math.sqrt(zd);
      b = (0.25 * (r13 + r31)) / d;
      c = (0.25 * (r23 + r32)) / d;
      a = (0.25 * (r21 - r12)) / d;
    }
    // the header stores only b, c, d and assumes a >= 0; q and -q are the same rotation
    if (a < 0) [b, c, d] = [-b, -c, -d];
  }
  return {
    quaternB: b,
    quaternC: c,
    quaternD: d,
    qoffset: [affine[0][3], affine[1][3], affine[2][3]],
    spacing,
    qfac,
  };
}

function determinant3(m: number[][]): number {
  return (
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
    m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
    m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
  );
}

function inverseTranspose3(m: number[][]): number[][] {
  const det = determinant3(m);
  const cofactor = (i: number, j: number) => {
    const [r0, r1] = [0, 1, 2].filter((r) => r !== i);
    const [c0, c1] = [0, 1, 2].filter((c) => c !== j);
    return ((i + j) % 2 === 0 ? 1 : -1) * (m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]);
  };
  return [0, 1, 2].map((i) => [0, 1, 2].map((j) => cofactor(i, j) / det));
}

/** Orthogonal polar factor by Newton's iteration X <- (X + X^-T) / 2 (what nibabel gets from an SVD). */
function closestOrthogonal(m: number[][]): number[][] {
  if (Math.abs(determinant3(m)) < 1e-12) {
    throw new RangeError('affine rotation part is singular: no qform can represent it');
  }
  let current = m.map((row) => [...row]);
  for (let iteration = 0; iteration < 100; iteration++) {
    const inverseT = inverseTranspose3(current);
    const next = current.map((row, i) => row.map((value, j) => 0.5 * (value + inverseT[i][j])));
    const change = Math.max(
      ...next.flatMap((row, i) => row.map((value, j) => Math.abs(value - current[i][j]))),
    );
    current = next;
    if (change < 1e-14) break;
  }
  return current;
}
