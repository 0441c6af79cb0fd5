import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitSubjects } from './subject-split.js';

const ids = Array.from({ length: 40 }, (_, i) => `BraTS2021_${String(i).padStart(5, '0')}`);

describe('splitSubjects', () => {
  it('holds out about the requested share of subjects, the same for the same seed whatever the order', () => {
    const a = splitSubjects(ids, 0.25, 7);
    const b = splitSubjects([...ids].reverse(), 0.25, 7);
    const test = [...a.values()].filter((s) => s === 'test').length;
    // Binomial(40, 0.25): mean 10, sd 2.7; each subject is decided on its own.
    assert.ok(test >= 4 && test <= 16, `${test} test subjects`);
    assert.deepEqual([...a].sort(), [...b].sort());
    const many = Array.from({ length: 4000 }, (_, i) => `case-${i}`);
    const share = [...splitSubjects(many, 0.15, 1).values()].filter((s) => s === 'test').length / many.length;
    assert.ok(Math.abs(share - 0.15) < 0.02, `share ${share}`);
  });

  it('changes with the seed', () => {
    const testOf = (seed: number) =>
      [...splitSubjects(ids, 0.25, seed)]
        .filter(([, s]) => s === 'test')
        .map(([id]) => id)
        .sort();
    assert.notDeepEqual(testOf(1), testOf(2));
  });

  it('adding subjects moves no existing subject between train and test', () => {
    const before = splitSubjects(ids, 0.2, 3);
    const added = Array.from({ length: 25 }, (_, i) => `BraTS2021_9${String(i).padStart(4, '0')}`);
    const after = splitSubjects([...ids, ...added], 0.2, 3);
    assert.deepEqual(
      ids.filter((id) => before.get(id) !== after.get(id)),
      [],
    );
  });

  it('keeps at least one test and one training subject', () => {
    const two = splitSubjects(['a', 'b'], 0.01, 0);
    assert.deepEqual([...two.values()].sort(), ['test', 'train']);
    assert.deepEqual([...splitSubjects(['a'], 0.5, 0).values()], ['train']);
    assert.ok([...splitSubjects(ids, 0, 0).values()].every((s) => s === 'train'));
    assert.throws(() => splitSubjects(ids, 1, 0), /test fraction must be in \[0, 1\)/);
  });
});
