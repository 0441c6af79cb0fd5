// Fréchet distance between two feature sets, each summarised by a Gaussian (mean μ, covariance Σ):
//   FD = |μr − μs|² + tr(Σr + Σs − 2 (Σr Σs)^½).
// (Σr Σs)^½ is not symmetric, so its trace is taken in the similar symmetric form tr((Σr^½ Σs Σr^½)^½): both
// matrices have the same non-negative eigenvalues, and the symmetric one yields to a cyclic Jacobi
// eigendecomposition in float64 (no complex parts, no Schur form as in scipy.linalg.sqrtm). Tiny negative
// eigenvalues from rounding are clamped to 0. All maths in float64; no tensors.

/** A symmetric n×n matrix, row-major. */
export interface SymmetricMatrix {
  n: number;
  values: Float64Array;
}

export interface EigenDecomposition {
  /** eigenvalues, ascending */
  values: Float64Array;
  /** eigenvectors as columns, row-major n×n: vectors[i·n + k] is component i of eigenvector k */
  vectors: Float64Array;
  sweeps: number;
}

function checkSquare(name: string, matrix: SymmetricMatrix): void {
  const { n, values } = matrix;
  if (!Number.isInteger(n) || n < 1 || values.length !== n * n) {
    throw new RangeError(`${name}: expected ${n}×${n} = ${n * n} values, got ${values.length}`);
  }
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!))
      throw new RangeError(`${name}: value ${i} is not finite (${values[i]})`);
  }
}

/**
 * Eigendecomposition of a symmetric matrix by cyclic Jacobi rotations (Golub & Van Loan §8.5), which is
 * accurate for small eigenvalues too. Only the symmetric part (A + Aᵀ)/2 is used.
 */
export function symmetricEigen(
  matrix: SymmetricMatrix,
  options: { maxSweeps?: number; tolerance?: number } = {},
): EigenDecomposition {
  checkSquare('symmetricEigen', matrix);
  const { n } = matrix;
  const maxSweeps = options.maxSweeps ?? 100;
  const tolerance = options.tolerance ?? 1e-15;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) a[i * n + j] = (matrix.values[i * n + j]! + matrix.values[j * n + i]!) / 2;
  }
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;

  let total = 0;
  for (let i = 0; i < n * n; i++) total += a[i]! * a[i]!;
  const threshold = tolerance * tolerance * total;
  let sweeps = 0;
  for (; sweeps < maxSweeps; sweeps++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += 2 * a[p * n + q]! * a[p * n + q]!;
    if (off <= threshold) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const app = a[p * n + p]!;
        const aqq = a[q * n + q]!;
        // The rotation that zeroes a[p][q]: t = tan θ, the smaller root of t² + 2τt − 1 = 0.
        const tau = (aqq - app) / (2 * apq);
        const t = (tau >= 0 ? 1 : -1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          // A ← Jᵀ A J, columns then rows.
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        a[p * n + q] = 0;
        a[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[i * n + i]! - a[j * n + j]!);
  const values = Float64Array.from(order, (i) => a[i * n + i]!);
  const vectors = new Float64Array(n * n);
  order.forEach((from, to) => {
    for (let k = 0; k < n; k++) vectors[k * n + to] = v[k * n + from]!;
  });
  return { values, vectors, sweeps };
}

/** V f(Λ) Vᵀ for a symmetric matrix, with f applied to each eigenvalue. */
function spectralMap(matrix: SymmetricMatrix, f: (lambda: number) => number): SymmetricMatrix {
  const { n } = matrix;
  const { values, vectors } = symmetricEigen(matrix);
  const mapped = Float64Array.from(values, f);
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += vectors[i * n + k]! * mapped[k]! * vectors[j * n + k]!;
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  }
  return { n, values: out };
}

/** The symmetric positive semi-definite square root; eigenvalues below 0 (rounding) count as 0. */
export function sqrtmPsd(matrix: SymmetricMatrix): SymmetricMatrix {
  return spectralMap(matrix, (lambda) => Math.sqrt(Math.max(lambda, 0)));
}

function multiply(n: number, a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k]!;
      if (aik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += aik * b[k * n + j]!;
    }
  }
  return out;
}

export interface GaussianStats {
  /** feature dimension */
  dim: number;
  /** samples behind the statistics */
  count: number;
  mean: Float64Array;
  /** unbiased (n − 1) covariance, dim×dim row-major (numpy.cov's default, as pytorch-fid uses) */
  covariance: Float64Array;
}

/** Mean and unbiased covariance of `count` feature vectors of length `dim` (row-major [count, dim]). */
export function gaussianStats(features: ArrayLike<number>, count: number, dim: number): GaussianStats {
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`gaussianStats: bad feature dimension ${dim}`);
  if (!Number.isInteger(count) || count < 2) {
    throw new RangeError(`gaussianStats: need at least 2 feature vectors for a covariance, got ${count}`);
  }
  if (features.length !== count * dim) {
    throw new RangeError(`gaussianStats: ${features.length} values for ${count} vectors of ${dim}`);
  }
  const mean = new Float64Array(dim);
  for (let r = 0; r < count; r++) {
    for (let d = 0; d < dim; d++) {
      const x = features[r * dim + d]!;
      if (!Number.isFinite(x)) throw new RangeError(`gaussianStats: feature ${d} of vector ${r} is ${x}`);
      mean[d] += x;
    }
  }
  for (let d = 0; d < dim; d++) mean[d] /= count;
  const covariance = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (let r = 0; r < count; r++) {
    for (let d = 0; d < dim; d++) centred[d] = features[r * dim + d]! - mean[d]!;
    for (let i = 0; i < dim; i++) {
      const ci = centred[i]!;
      for (let j = i; j < dim; j++) covariance[i * dim + j] += ci * centred[j]!;
    }
  }
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) {
      const c = covariance[i * dim + j]! / (count - 1);
      covariance[i * dim + j] = c;
      covariance[j * dim + i] = c;
    }
  }
  return { dim, count, mean, covariance };
}

export interface FrechetDistance {
  /** |μr − μs|² + tr Σr + tr Σs − 2 tr (Σr Σs)^½, clamped at 0 against rounding */
  distance: number;
  /** |μr − μs|² */
  meanTerm: number;
  /** tr Σr + tr Σs − 2 tr (Σr Σs)^½ */
  covarianceTerm: number;
}

/** The Fréchet distance between the Gaussians N(μr, Σr) and N(μs, Σs). */
export function frechetDistance(real: GaussianStats, synthetic: GaussianStats): FrechetDistance {
  const n = real.dim;
  if (synthetic.dim !== n) {
    throw new RangeError(
      `frechetDistance: feature dimensions differ (real ${n}, synthetic ${synthetic.dim})`,
    );
  }
  const sigmaR: SymmetricMatrix = { n, values: real.covariance };
  const sigmaS: SymmetricMatrix = { n, values: synthetic.covariance };
  checkSquare('real covariance', sigmaR);
  checkSquare('synthetic covariance', sigmaS);
  let meanTerm = 0;
  for (let d = 0; d < n; d++) meanTerm += (real.mean[d]! - synthetic.mean[d]!) ** 2;
  const rootR = sqrtmPsd(sigmaR).values;
  const inner = multiply(n, multiply(n, rootR, sigmaS.values), rootR);
  const { values } = symmetricEigen({ n, values: inner });
  let traceRoot = 0;
  for (const lambda of values) traceRoot += Math.sqrt(Math.max(lambda, 0));
  let traces = 0;
  for (let d = 0; d < n; d++) traces += sigmaR.values[d * n + d]! + sigmaS.values[d * n + d]!;
  const covarianceTerm = traces - 2 * traceRoot;
  return { distance: Math.max(0, meanTerm + covarianceTerm), meanTerm, covarianceTerm };
}
