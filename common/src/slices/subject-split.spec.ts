import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitSubjects } from './subject-split.js';

const ids = Array.from({ length: 40 }, (_, i) => `BraTS2021_${String(i).padStart(5, '0')}`);

describe('splitSubjects', () => {
  it('holds out the requested share of subjects, the same for the same seed whatever the order', () => {
    const a = splitSubjects(ids, 0.25, 7);
    const b = splitSubjects([...ids].reverse(), 0.25, 7);
    assert.equal([...a.values()].filter((s) => s === 'test').length, 10);
    assert.deepEqual([...a].sort(), [...b].sort());
  });

  it('changes with the seed', () => {
    const testOf = (seed: number) =>
      [...splitSubjects(ids, 0.25, seed)]
        .filter(([, s]) => s === 'test')
        .map(([id]) => id)
        .sort();
    assert.notDeepEqual(testOf(1), testOf(2));
  });

  it('adding a subject moves no other subject', () => {
    const before = splitSubjects(ids, 0.2, 3);
    const after = splitSubjects([...ids, 'BraTS2021_99999'], 0.2, 3);
    const moved = ids.filter((id) => before.get(id) !== after.get(id));
    assert.ok(moved.length <= 1, `moved ${moved.length}`);
  });

  it('keeps at least one test and one training subject', () => {
    const two = splitSubjects(['a', 'b'], 0.01, 0);
    assert.deepEqual([...two.values()].sort(), ['test', 'train']);
    assert.deepEqual([...splitSubjects(['a'], 0.5, 0).values()], ['train']);
    assert.ok([...splitSubjects(ids, 0, 0).values()].every((s) => s === 'train'));
    assert.throws(() => splitSubjects(ids, 1, 0), /test fraction must be in \[0, 1\)/);
  });
});
