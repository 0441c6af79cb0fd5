import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { createRng } from '../util/rng.js';
import { patientKey, splitSubjects, type Split } from './subject-split.js';

/** The split as it was before patients were grouped (each case hashed its own id): the compatibility oracle. */
function caseSplit(ids: readonly string[], testFraction: number, seed: number): Map<string, Split> {
  const key = (id: string) =>
    parseInt(createHash('sha256').update(`${seed}:${id}`).digest('hex').slice(0, 13), 16) / 2 ** 52;
  const ranked = [...new Set(ids)].map((id) => ({ id, key: key(id) })).sort((a, b) => a.key - b.key);
  const split = new Map<string, Split>();
  for (const { id, key } of ranked) split.set(id, key < testFraction ? 'test' : 'train');
  if (testFraction > 0 && ranked.length >= 2) {
    if (split.get(ranked[0]!.id) === 'train') split.set(ranked[0]!.id, 'test');
    if (split.get(ranked[ranked.length - 1]!.id) === 'test')
      split.set(ranked[ranked.length - 1]!.id, 'train');
  }
  return split;
}

const sorted = (m: Map<string, Split>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

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

  it('keys BraTS 2023 cases by patient (timepoint zeroed); earlier names are their own patient', () => {
    assert.equal(patientKey('BraTS-GLI-00042-000'), 'BraTS-GLI-00042-000');
    assert.equal(patientKey('BraTS-GLI-00042-001'), 'BraTS-GLI-00042-000');
    assert.equal(patientKey('BraTS-MEN-RT-0003-1'), 'BraTS-MEN-RT-0003-0');
    assert.notEqual(patientKey('BraTS-GLI-00043-001'), patientKey('BraTS-GLI-00042-001'));
    assert.notEqual(patientKey('BraTS-MET-00042-001'), patientKey('BraTS-GLI-00042-001'));
    for (const id of ['BraTS2021_00042', 'BraTS20_Training_001', 'case-7', 'site-2_patient-0001'])
      assert.equal(patientKey(id), id);
  });

  it('puts every timepoint of a patient on the same side of the split', () => {
    const rng = createRng('follow-ups');
    const ids: string[] = [];
    for (let p = 0; p < 300; p++) {
      const timepoints = 1 + rng.int(3);
      for (let t = 0; t < timepoints; t++)
        ids.push(`BraTS-GLI-${String(p).padStart(5, '0')}-${String(t).padStart(3, '0')}`);
    }
    let splitPatients = 0;
    for (const seed of [0, 1, 2, 3]) {
      const split = splitSubjects(ids, 0.3, seed);
      assert.equal(split.size, ids.length);
      const sides = new Map<string, Set<Split>>();
      for (const id of ids)
        sides.set(patientKey(id), (sides.get(patientKey(id)) ?? new Set()).add(split.get(id)!));
      assert.deepEqual(
        [...sides].filter(([, s]) => s.size > 1).map(([k]) => k),
        [],
      );
      const test = [...sides.values()].filter((s) => s.has('test')).length;
      assert.ok(test > 50 && test < 130, `${test} of 300 patients held out`);
      // drawn case by case, some patient's timepoints would straddle the split
      const old = caseSplit(ids, 0.3, seed);
      if (ids.some((id) => old.get(id) !== old.get(patientKey(id)))) splitPatients++;
    }
    assert.ok(splitPatients > 0, 'the case-by-case split separates timepoints (the bug this fixes)');
    // the smallest site: one patient scanned twice is one patient, not two to force apart
    for (const seed of [0, 1, 2, 3]) {
      const [a, b] = splitSubjects(['BraTS-GLI-00001-000', 'BraTS-GLI-00001-001'], 0.5, seed).values();
      assert.equal(a, b);
    }
  });

  it('leaves the split of single-timepoint cases as it was, and adding follow-ups moves no baseline', () => {
    const y2023 = Array.from({ length: 60 }, (_, i) => `BraTS-GLI-${String(i).padStart(5, '0')}-000`);
    for (const [set, fraction, seed] of [
      [ids, 0.25, 7],
      [ids, 0.01, 3],
      [y2023, 0.15, 0],
      [y2023, 0.5, 11],
    ] as const) {
      assert.deepEqual(sorted(splitSubjects(set, fraction, seed)), sorted(caseSplit(set, fraction, seed)));
    }
    const before = splitSubjects(y2023, 0.2, 5);
    const followUps = y2023.filter((_, i) => i % 3 === 0).map((id) => id.replace(/-000$/, '-001'));
    const after = splitSubjects([...y2023, ...followUps], 0.2, 5);
    assert.deepEqual(
      y2023.filter((id) => before.get(id) !== after.get(id)),
      [],
    );
    for (const id of followUps) assert.equal(after.get(id), after.get(patientKey(id)));
  });
});
