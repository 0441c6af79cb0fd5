// The Fréchet distance's maths against closed forms and against scipy (Debian's /usr/bin/python3 with
// python3-scipy: numpy.cov and scipy.linalg.sqrtm, the way pytorch-fid computes it). A missing python or scipy
// fails the test, never skips it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { createRng } from '../../util/rng.js';
import {
  frechetDistance,
  gaussianStats,
  sqrtmPsd,
  symmetricEigen,
  type GaussianStats,
  type SymmetricMatrix,
} from './frechet.js';

/** A random symmetric positive definite matrix B Bᵀ + εI. */
function randomSpd(n: number, seed: number, epsilon = 1e-3): Float64Array {
  const rng = createRng(seed);
  const b = Float64Array.from({ length: n * n }, () => rng.normal());
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = i === j ? epsilon : 0;
      for (let k = 0; k < n; k++) s += b[i * n + k]! * b[j * n + k]!;
      out[i * n + j] = s;
    }
  }
  return out;
}

function multiply(n: number, a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) out[i * n + j] += a[i * n + k]! * b[k * n + j]!;
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function stats(mean: number[], covariance: Float64Array, count = 100): GaussianStats {
  return { dim: mean.length, count, mean: Float64Array.from(mean), covariance };
}

function diagonal(values: number[]): Float64Array {
  const n = values.length;
  const out = new Float64Array(n * n);
  values.forEach((v, i) => (out[i * n + i] = v));
  return out;
}

/** [count, dim] samples of N(mean, L Lᵀ) for a given lower factor L, seeded. */
function samples(count: number, mean: number[], factor: Float64Array, seed: number): Float64Array {
  const dim = mean.length;
  const rng = createRng(seed);
  const out = new Float64Array(count * dim);
  const z = new Float64Array(dim);
  for (let r = 0; r < count; r++) {
    for (let d = 0; d < dim; d++) z[d] = rng.normal();
    for (let i = 0; i < dim; i++) {
      let s = mean[i]!;
      for (let k = 0; k < dim; k++) s += factor[i * dim + k]! * z[k]!;
      out[r * dim + i] = s;
    }
  }
  return out;
}

/** pytorch-fid's calculate_frechet_distance, with numpy.cov statistics. */
const SCIPY_ORACLE = `
import json, sys
import numpy as np
from scipy import linalg
cases = json.load(sys.stdin)
out = []
for c in cases:
    a = np.array(c['a'], dtype=np.float64).reshape(c['countA'], c['dim'])
    b = np.array(c['b'], dtype=np.float64).reshape(c['countB'], c['dim'])
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    diff = mu1 - mu2
    fd = diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    out.append({'fd': float(fd), 'mean': mu1.tolist(), 'cov': s1.ravel().tolist(),
                'eig': np.linalg.eigvalsh(s1).tolist()})
print(json.dumps(out))
`;

interface OracleCase {
  a: Float64Array;
  b: Float64Array;
  countA: number;
  countB: number;
  dim: number;
}

function scipy(cases: OracleCase[]): Array<{ fd: number; mean: number[]; cov: number[]; eig: number[] }> {
  const run = spawnSync('/usr/bin/python3', ['-c', SCIPY_ORACLE], {
    input: JSON.stringify(cases.map((c) => ({ ...c, a: Array.from(c.a), b: Array.from(c.b) }))),
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  assert.equal(run.status, 0, `scipy oracle failed: ${run.error?.message ?? run.stderr}`);
  return JSON.parse(run.stdout) as Array<{ fd: number; mean: number[]; cov: number[]; eig: number[] }>;
}

describe('symmetricEigen', () => {
  it('decomposes a random symmetric matrix: A V = V Λ, Vᵀ V = I, ascending values', () => {
    for (const n of [1, 2, 5, 24]) {
      const a: SymmetricMatrix = { n, values: randomSpd(n, n, -2) };
      const { values, vectors } = symmetricEigen(a);
      const av = multiply(n, a.values, vectors);
      const vl = Float64Array.from(vectors, (x, i) => x * values[i % n]!);
      assert.ok(maxAbsDiff(av, vl) < 1e-9 * n * n, `n ${n}: A V ≠ V Λ by ${maxAbsDiff(av, vl)}`);
      const vt = Float64Array.from({ length: n * n }, (_, i) => vectors[(i % n) * n + Math.floor(i / n)]!);
      const identity = diagonal(Array<number>(n).fill(1));
      assert.ok(maxAbsDiff(multiply(n, vt, vectors), identity) < 1e-12 * n);
      for (let i = 1; i < n; i++) assert.ok(values[i - 1]! <= values[i]!);
    }
  });

  it('finds the eigenvalues of a 2×2 matrix in closed form', () => {
    // [[a, b], [b, c]]: (a + c)/2 ± √(((a − c)/2)² + b²)
    const { values } = symmetricEigen({ n: 2, values: Float64Array.from([3, 2, 2, -1]) });
    const mid = 1;
    const radius = Math.sqrt(4 + 4);
    assert.ok(Math.abs(values[0]! - (mid - radius)) < 1e-14);
    assert.ok(Math.abs(values[1]! - (mid + radius)) < 1e-14);
  });

  it('refuses non-square or non-finite input, naming it', () => {
    assert.throws(
      () => symmetricEigen({ n: 2, values: new Float64Array(3) }),
      /expected 2×2 = 4 values, got 3/,
    );
    assert.throws(() => symmetricEigen({ n: 1, values: Float64Array.from([NaN]) }), /value 0 is not finite/);
  });
});

describe('sqrtmPsd', () => {
  it('gives a symmetric S with S S = A, also for a singular A', () => {
    const n = 12;
    const a = randomSpd(n, 7);
    const s = sqrtmPsd({ n, values: a }).values;
    assert.ok(maxAbsDiff(multiply(n, s, s), a) < 1e-9 * maxAbsDiff(a, new Float64Array(n * n)));
    // rank 1: v vᵀ has the root v vᵀ / |v|
    const v = [1, 2, -2];
    const rank1 = Float64Array.from({ length: 9 }, (_, i) => v[Math.floor(i / 3)]! * v[i % 3]!);
    const root = sqrtmPsd({ n: 3, values: rank1 }).values;
    assert.ok(
      maxAbsDiff(
        root,
        Float64Array.from(rank1, (x) => x / 3),
      ) < 1e-12,
    );
  });
});

describe('frechetDistance', () => {
  it('is 0 for identical statistics', () => {
    const covariance = randomSpd(16, 3);
    const g = stats(
      Array.from({ length: 16 }, (_, i) => i / 3),
      covariance,
    );
    const fd = frechetDistance(g, g);
    assert.ok(fd.distance < 1e-9, `FD ${fd.distance}`);
    assert.ok(Math.abs(fd.covarianceTerm) < 1e-9);
  });

  it('equals the closed form for diagonal covariances: |Δμ|² + Σ (√a − √b)²', () => {
    const a = [4, 1, 9, 0.25];
    const b = [1, 1, 16, 2];
    const fd = frechetDistance(stats([0, 1, 2, 3], diagonal(a)), stats([1, 1, 0, 3], diagonal(b)));
    const expectedMean = 1 + 0 + 4 + 0;
    const expectedCov = a.reduce((s, x, i) => s + (Math.sqrt(x) - Math.sqrt(b[i]!)) ** 2, 0);
    assert.ok(Math.abs(fd.meanTerm - expectedMean) < 1e-12);
    assert.ok(Math.abs(fd.covarianceTerm - expectedCov) < 1e-12, `${fd.covarianceTerm} vs ${expectedCov}`);
    assert.ok(Math.abs(fd.distance - (expectedMean + expectedCov)) < 1e-12);
  });

  it('equals the closed form for a covariance and a scaled copy: tr Σ (1 − √c)²', () => {
    // Σs = c Σr commutes with Σr: tr(Σr + cΣr − 2√c Σr) = (1 − √c)² tr Σr, whatever the rotation of Σr.
    const n = 10;
    const sigma = randomSpd(n, 11);
    const c = 2.5;
    const fd = frechetDistance(
      stats(Array<number>(n).fill(0), sigma),
      stats(
        Array<number>(n).fill(0),
        Float64Array.from(sigma, (x) => c * x),
      ),
    );
    let trace = 0;
    for (let i = 0; i < n; i++) trace += sigma[i * n + i]!;
    const expected = trace * (1 - Math.sqrt(c)) ** 2;
    assert.ok(Math.abs(fd.distance - expected) < 1e-9 * expected, `${fd.distance} vs ${expected}`);
  });

  it('refuses different feature dimensions', () => {
    assert.throws(
      () => frechetDistance(stats([0], diagonal([1])), stats([0, 0], diagonal([1, 1]))),
      /feature dimensions differ \(real 1, synthetic 2\)/,
    );
  });
});

describe('gaussianStats and frechetDistance against numpy / scipy', () => {
  it('agree with numpy.cov and pytorch-fid-style scipy.linalg.sqrtm on random feature sets', () => {
    const cases: OracleCase[] = [];
    for (const [k, dim] of [3, 16, 64].entries()) {
      const countA = 300;
      const countB = 200 + 50 * k;
      const factorA = randomSpd(dim, 100 + k);
      const factorB = randomSpd(dim, 200 + k);
      const meanA = Array.from({ length: dim }, (_, i) => Math.sin(i));
      const meanB = Array.from({ length: dim }, (_, i) => Math.sin(i) + 0.3 * Math.cos(3 * i));
      cases.push({
        a: samples(countA, meanA, factorA, 300 + k),
        b: samples(countB, meanB, factorB, 400 + k),
        countA,
        countB,
        dim,
      });
    }
    const expected = scipy(cases);
    cases.forEach((c, k) => {
      const a = gaussianStats(c.a, c.countA, c.dim);
      const b = gaussianStats(c.b, c.countB, c.dim);
      const { mean, cov, eig, fd } = expected[k]!;
      assert.ok(maxAbsDiff(a.mean, mean) < 1e-9, `dim ${c.dim}: mean`);
      const scale = Math.max(...cov.map(Math.abs));
      assert.ok(maxAbsDiff(a.covariance, cov) < 1e-9 * scale, `dim ${c.dim}: covariance`);
      const ours = symmetricEigen({ n: c.dim, values: a.covariance }).values;
      assert.ok(maxAbsDiff(ours, eig) < 1e-9 * scale, `dim ${c.dim}: eigenvalues`);
      const distance = frechetDistance(a, b).distance;
      assert.ok(
        Math.abs(distance - fd) < 1e-7 * Math.max(1, fd),
        `dim ${c.dim}: FD ${distance} vs scipy ${fd}`,
      );
    });
  });

  it('approaches the analytic FD of the generating Gaussians as the samples grow', () => {
    // N(0, diag(1, 4)) vs N((1, 0), diag(4, 1)): FD = 1 + (1 − 2)² + (2 − 1)² = 3
    const real = samples(20000, [0, 0], diagonal([1, 2]), 5);
    const synthetic = samples(20000, [1, 0], diagonal([2, 1]), 6);
    const fd = frechetDistance(gaussianStats(real, 20000, 2), gaussianStats(synthetic, 20000, 2));
    assert.ok(Math.abs(fd.distance - 3) < 0.1, `FD ${fd.distance}`);
  });

  it('scores a noisier copy of a set worse, and worse with more noise', () => {
    const dim = 8;
    const count = 2000;
    const factor = randomSpd(dim, 9);
    const mean = Array<number>(dim).fill(1);
    const real = gaussianStats(samples(count, mean, factor, 1), count, dim);
    const other = gaussianStats(samples(count, mean, factor, 2), count, dim);
    const noisy = (scale: number): GaussianStats => {
      const x = samples(count, mean, factor, 2);
      const rng = createRng(3);
      return gaussianStats(
        Float64Array.from(x, (v) => v + scale * rng.normal()),
        count,
        dim,
      );
    };
    const same = frechetDistance(real, other).distance;
    const little = frechetDistance(real, noisy(1)).distance;
    const much = frechetDistance(real, noisy(3)).distance;
    assert.ok(same < little && little < much, `same ${same}, noise 1 ${little}, noise 3 ${much}`);
  });

  it('refuses fewer than 2 vectors or non-finite features', () => {
    assert.throws(() => gaussianStats([1, 2], 1, 2), /at least 2 feature vectors/);
    assert.throws(() => gaussianStats([1, NaN, 2, 3], 2, 2), /feature 1 of vector 0 is NaN/);
  });
});
