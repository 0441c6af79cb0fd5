// The federated demo's cases per site: every site gets a training and a held-out test subject.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../cli-errors.js';
import { federatedSiteSizes } from './demo.command.js';

describe('federatedSiteSizes', () => {
  it('splits --cases unequally and deterministically, at least 2 per site', () => {
    for (const [sites, cases] of [
      [3, 12],
      [3, 6],
      [4, 9],
      [1, 2],
    ] as const) {
      for (const seed of ['1', '2', '7']) {
        const opts = { sites: String(sites), cases: String(cases), seed };
        const { siteSizes, cases: total } = federatedSiteSizes(opts);
        assert.equal(siteSizes.length, sites);
        assert.equal(total, cases);
        assert.equal(
          siteSizes.reduce((a, b) => a + b, 0),
          cases,
        );
        assert.ok(
          siteSizes.every((n) => n >= 2),
          `${siteSizes} (seed ${seed})`,
        );
        assert.deepEqual(federatedSiteSizes(opts).siteSizes, siteSizes);
      }
    }
    // 12 over 3 is unequal for the default seed
    assert.ok(new Set(federatedSiteSizes({ sites: '3', cases: '12', seed: '1' }).siteSizes).size > 1);
  });

  it('takes --site-sizes as given and refuses a site below 2 cases or too few cases', () => {
    assert.deepEqual(federatedSiteSizes({ siteSizes: '2, 3,2', sites: '9', cases: '1', seed: '1' }), {
      siteSizes: [2, 3, 2],
      cases: 7,
    });
    assert.throws(
      () => federatedSiteSizes({ siteSizes: '3,1', sites: '2', cases: '4', seed: '1' }),
      (e: unknown) =>
        e instanceof UsageError && /--site-sizes must be an integer ≥ 2, got "1"/.test(e.message),
    );
    assert.throws(
      () => federatedSiteSizes({ sites: '3', cases: '5', seed: '1' }),
      (e: unknown) => e instanceof UsageError && /--cases must be at least 2 per site/.test(e.message),
    );
  });
});
