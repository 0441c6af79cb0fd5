import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { createRng, type Rng } from './rng.js';

function draws(rng: Rng, count: number): number[] {
  return Array.from({ length: count }, () => rng.next());
}

describe('createRng', () => {
  it('repeats the same sequence for the same seed, number or string', () => {
    assert.deepEqual(draws(createRng(42), 100), draws(createRng(42), 100));
    assert.deepEqual(draws(createRng('site-1'), 100), draws(createRng('site-1'), 100));
  });

  it('gives different sequences for different seeds', () => {
    const seeds = [0, 1, 2, 2 ** 32, -1, 0.5, '0', '1', ''];
    const firsts = seeds.map((seed) => draws(createRng(seed), 4).join(','));
    assert.equal(new Set(firsts).size, seeds.length);
  });

  it('refuses non-finite seeds', () => {
    assert.throws(() => createRng(Number.NaN), /finite/);
    assert.throws(() => createRng(Infinity), /finite/);
  });

  it('keeps next() in [0, 1) with a uniform mean and variance', () => {
    const rng = createRng(7);
    const count = 100_000;
    let sum = 0;
    let sumSquares = 0;
    for (let i = 0; i < count; i++) {
      const value = rng.next();
      assert.ok(value >= 0 && value < 1);
      sum += value;
      sumSquares += value * value;
    }
    const mean = sum / count;
    assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(sumSquares / count - mean * mean - 1 / 12) < 0.005);
  });

  it('draws int(n) in [0, n) and hits every value', () => {
    const rng = createRng('ints');
    const seen = new Array<number>(7).fill(0);
    for (let i = 0; i < 7000; i++) {
      const value = rng.int(7);
      assert.ok(Number.isInteger(value) && value >= 0 && value < 7);
      seen[value]++;
    }
    for (const count of seen) assert.ok(count > 800 && count < 1200, `counts ${seen}`);
    assert.throws(() => rng.int(0), RangeError);
    assert.throws(() => rng.int(2.5), RangeError);
  });

  it('draws normal deviates with mean 0 and variance 1, and honours mean and sd', () => {
    const rng = createRng(2024);
    const count = 100_000;
    let sum = 0;
    let sumSquares = 0;
    for (let i = 0; i < count; i++) {
      const value = rng.normal();
      assert.ok(Number.isFinite(value));
      sum += value;
      sumSquares += value * value;
    }
    const mean = sum / count;
    assert.ok(Math.abs(mean) < 0.02, `mean ${mean}`);
    assert.ok(Math.abs(sumSquares / count - mean * mean - 1) < 0.03, `variance ${sumSquares / count}`);

    let shiftedSum = 0;
    for (let i = 0; i < 10_000; i++) shiftedSum += rng.normal(100, 5);
    assert.ok(Math.abs(shiftedSum / 10_000 - 100) < 0.5);
  });

  it('forks deterministic streams that differ from each other and from the parent', () => {
    const parent = createRng(99);
    const a = draws(parent.fork('site-1'), 50);
    const b = draws(parent.fork('site-2'), 50);
    assert.notDeepEqual(a, b);
    assert.notDeepEqual(a, draws(createRng(99), 50));
    assert.deepEqual(a, draws(createRng(99).fork('site-1'), 50));
    assert.notDeepEqual(a, draws(createRng(98).fork('site-1'), 50));
    assert.deepEqual(draws(parent.fork(3), 5), draws(parent.fork('3'), 5));
  });

  it('forks by seed and label only, whatever the parent has drawn', () => {
    const fresh = createRng('case');
    const used = createRng('case');
    draws(used, 1000);
    used.normal();
    assert.deepEqual(draws(fresh.fork('t1').fork('noise'), 20), draws(used.fork('t1').fork('noise'), 20));
  });
});
