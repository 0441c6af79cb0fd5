import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalLookup, schemeFromLabelValues, UNKNOWN_LABEL } from './label-schemes.js';

describe('label schemes', () => {
  it('map every year to canonical NCR 1, ED 2, ET 3', () => {
    const l2013 = canonicalLookup('2013');
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((v) => l2013[v]),
      [0, 1, 2, 1, 3],
      '2013: non-enhancing merges into NCR/NET',
    );
    const l2017 = canonicalLookup('2017');
    assert.deepEqual(
      [0, 1, 2, 4].map((v) => l2017[v]),
      [0, 1, 2, 3],
    );
    assert.equal(l2017[3], UNKNOWN_LABEL, '3 does not exist in 2017-2022 data');
    const l2023 = canonicalLookup('2023');
    assert.deepEqual(
      [0, 1, 2, 3].map((v) => l2023[v]),
      [0, 1, 2, 3],
    );
    assert.equal(l2023[4], UNKNOWN_LABEL);
    assert.equal(l2023[5], UNKNOWN_LABEL);
  });

  it('guess the scheme from the values present only when they decide', () => {
    assert.equal(schemeFromLabelValues([1, 2, 3, 4]), '2013');
    assert.equal(schemeFromLabelValues([1, 2, 4]), '2017');
    assert.equal(schemeFromLabelValues([2, 3]), '2023');
    assert.equal(schemeFromLabelValues([1, 2]), undefined);
  });
});
