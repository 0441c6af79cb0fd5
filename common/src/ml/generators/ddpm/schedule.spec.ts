// The noise schedules against closed forms, and the forward process q(x_t | x_0).
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { createRng } from '../../../util/rng.js';
import { selectBackend } from '../../backend/index.js';
import { normals } from './ddpm.js';
import { cosineAlphaBar, cosineBetas, createNoiseSchedule, linearBetas, qSample } from './schedule.js';

function close(actual: number, expected: number, relative: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= relative * Math.abs(expected) + 1e-300,
    `${what}: ${actual} vs ${expected}`,
  );
}

describe('noise schedules', () => {
  it('linear: Ho et al.’s 1e-4 … 0.02 at T = 1000, scaled by 1000/T otherwise, evenly spaced', () => {
    const ho = linearBetas(1000);
    close(ho[0]!, 1e-4, 1e-12, 'β_0');
    close(ho[999]!, 0.02, 1e-12, 'β_999');
    close(ho[500]!, 1e-4 + ((0.02 - 1e-4) * 500) / 999, 1e-12, 'β_500');
    const paper = linearBetas(4000);
    close(paper[0]!, 2.5e-5, 1e-12, 'T = 4000: β_0');
    close(paper[3999]!, 0.005, 1e-12, 'T = 4000: β_3999');
    for (let t = 1; t < 4000; t++) close(paper[t]! - paper[t - 1]!, (0.005 - 2.5e-5) / 3999, 1e-6, 'step');
    assert.throws(() => linearBetas(20), /T must exceed 20/);
  });

  it('ᾱ_t is the running product of 1 − β and every derived table follows from it', () => {
    const s = createNoiseSchedule('linear', 1000);
    let product = 1;
    for (let t = 0; t < 1000; t++) {
      product *= 1 - s.betas[t]!;
      close(s.alphasCumprod[t]!, product, 1e-12, `ᾱ_${t}`);
      close(s.alphas[t]!, 1 - s.betas[t]!, 1e-15, `α_${t}`);
      close(s.alphasCumprodPrev[t]!, t === 0 ? 1 : s.alphasCumprod[t - 1]!, 1e-15, `ᾱ_${t - 1}`);
      close(s.sqrtAlphasCumprod[t]! ** 2, product, 1e-12, '√ᾱ');
      close(s.sqrtOneMinusAlphasCumprod[t]! ** 2, 1 - product, 1e-12, '√(1−ᾱ)');
      close(s.sqrtRecipAlphasCumprod[t]! * s.sqrtAlphasCumprod[t]!, 1, 1e-12, '1/√ᾱ');
      close(s.sqrtRecipM1AlphasCumprod[t]! ** 2, 1 / product - 1, 1e-10, '√(1/ᾱ − 1)');
    }
    // The well-known end point of Ho et al.'s schedule: ᾱ_T ≈ 4.04e-5, so x_T is almost pure noise.
    close(s.alphasCumprod[999]!, 4.0358e-5, 1e-3, 'ᾱ_T');
    // Scaling keeps ᾱ_T about the same for T = 4000.
    close(createNoiseSchedule('linear', 4000).alphasCumprod[3999]!, 4.0358e-5, 0.1, 'ᾱ_T at T = 4000');
  });

  it('cosine: ᾱ_t = f(t + 1)/f(0) with f(τ) = cos²((τ/T + s)/(1 + s) · π/2), β clipped at 0.999', () => {
    const T = 1000;
    const s = createNoiseSchedule('cosine', T);
    const f = (step: number) => Math.cos(((step / T + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    for (const t of [0, 1, 10, 250, 500, 750, 990]) {
      // The product of the unclipped ratios telescopes.
      close(s.alphasCumprod[t]!, f(t + 1) / f(0), 1e-9, `ᾱ_${t}`);
      close(s.betas[t]!, 1 - f(t + 1) / f(t), 1e-9, `β_${t}`);
    }
    close(cosineAlphaBar(0.5), Math.cos((0.508 / 1.008) * (Math.PI / 2)) ** 2, 1e-15, 'ᾱ(0.5)');
    // β_0 = 1 − f(1)/f(0) is tiny; the last β would be 1 (f(T) = cos²(π/2) ≈ 0) and is clipped.
    assert.ok(s.betas[0]! > 0 && s.betas[0]! < 1e-4, `β_0 ${s.betas[0]}`);
    assert.equal(s.betas[T - 1], 0.999);
    assert.ok(cosineBetas(T).every((beta) => beta > 0 && beta <= 0.999));
  });

  it('posterior q(x_{t−1} | x_t, x_0): variance and mean coefficients equal Bayes’ Gaussian product', () => {
    for (const kind of ['linear', 'cosine'] as const) {
      const s = createNoiseSchedule(kind, 1000);
      for (const t of [1, 2, 100, 500, 999]) {
        const beta = s.betas[t]!;
        const prev = s.alphasCumprod[t - 1]!;
        // prior x_{t−1} ~ N(√ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}); likelihood x_t | x_{t−1} ~ N(√α_t x_{t−1}, β_t)
        const precision = 1 / (1 - prev) + (1 - beta) / beta;
        close(s.posteriorVariance[t]!, 1 / precision, 1e-9, `${kind} β̃_${t}`);
        close(s.posteriorMeanCoef1[t]!, Math.sqrt(prev) / (1 - prev) / precision, 1e-9, `${kind} coef1_${t}`);
        close(s.posteriorMeanCoef2[t]!, Math.sqrt(1 - beta) / beta / precision, 1e-9, `${kind} coef2_${t}`);
        close(s.posteriorLogVarianceClipped[t]!, Math.log(s.posteriorVariance[t]!), 1e-12, 'log β̃');
      }
      // t = 0: the posterior is the point x_0.
      assert.equal(s.posteriorVariance[0], 0);
      close(s.posteriorMeanCoef1[0]!, 1, 1e-12, 'coef1_0');
      assert.equal(s.posteriorMeanCoef2[0], 0);
      assert.equal(s.posteriorLogVarianceClipped[0], Math.log(s.posteriorVariance[1]!));
    }
  });

  it('refuses bad T and unknown kinds', () => {
    assert.throws(() => createNoiseSchedule('linear', 0), /positive integer/);
    assert.throws(() => createNoiseSchedule('cosine', 2.5), /positive integer/);
    assert.throws(() => createNoiseSchedule('sigmoid' as 'linear', 100), /unknown noise schedule/);
  });
});

describe('qSample', () => {
  before(() => selectBackend({ prefer: 'wasm', logger: () => {} }));

  it('is √ᾱ_t x_0 + √(1 − ᾱ_t) ε element for element, one t per image', () => {
    const s = createNoiseSchedule('linear', 1000);
    const rng = createRng('q-exact');
    const x0 = Float32Array.from({ length: 3 * 4 * 4 * 5 }, () => rng.uniform(-1, 1));
    const eps = normals(rng, x0.length);
    const t = [0, 417, 999];
    const xt = tf.tidy(() =>
      qSample(s, tf.tensor4d(x0, [3, 4, 4, 5]), t, tf.tensor4d(eps, [3, 4, 4, 5])).dataSync(),
    );
    for (let i = 0; i < x0.length; i++) {
      const ti = t[Math.floor(i / 80)]!;
      const expected =
        Math.sqrt(s.alphasCumprod[ti]!) * x0[i]! + Math.sqrt(1 - s.alphasCumprod[ti]!) * eps[i]!;
      assert.ok(Math.abs(xt[i]! - expected) < 1e-5, `element ${i}: ${xt[i]} vs ${expected}`);
    }
    assert.throws(
      () => tf.tidy(() => qSample(s, tf.zeros([1, 2, 2, 5]), [1000], tf.zeros([1, 2, 2, 5]))),
      /outside/,
    );
  });

  it('has mean √ᾱ_t x_0 and standard deviation √(1 − ᾱ_t) over many draws of ε', () => {
    const s = createNoiseSchedule('cosine', 1000);
    const n = 4;
    const size = 64;
    const t = [0, 300, 600, 999];
    const x0 = 0.6;
    const values = tf.tidy(() => {
      const eps = tf.tensor4d(normals(createRng('q-stats'), n * size * size * 5), [n, size, size, 5]);
      return qSample(s, tf.fill([n, size, size, 5], x0) as tf.Tensor4D, t, eps).dataSync() as Float32Array;
    });
    const per = size * size * 5;
    t.forEach((ti, k) => {
      const sample = values.subarray(k * per, (k + 1) * per);
      const mean = sample.reduce((a, b) => a + b, 0) / per;
      const sd = Math.sqrt(sample.reduce((a, b) => a + (b - mean) ** 2, 0) / per);
      const expectedSd = Math.sqrt(1 - s.alphasCumprod[ti]!);
      // 20480 draws: the mean is within 4 standard errors, the sd within 3%.
      assert.ok(
        Math.abs(mean - Math.sqrt(s.alphasCumprod[ti]!) * x0) < 4 * (expectedSd / Math.sqrt(per)) + 1e-6,
        `t ${ti}: mean ${mean}`,
      );
      if (expectedSd > 0.01)
        assert.ok(Math.abs(sd / expectedSd - 1) < 0.03, `t ${ti}: sd ${sd} vs ${expectedSd}`);
    });
  });
});
