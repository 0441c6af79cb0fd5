// Train/test split by subject (never by slice: slices of one subject are near-duplicates), seeded and stable.
import { createHash } from 'node:crypto';

export type Split = 'train' | 'test';

/**
 * Assigns each subject to train or test. The order comes from a seeded hash of the id, so the split does not
 * depend on the order the cases were found in, and adding a subject moves no other subject.
 * At least one test subject whenever testFraction > 0 and there are two or more subjects.
 */
export function splitSubjects(
  ids: readonly string[],
  testFraction: number,
  seed: number,
): Map<string, Split> {
  if (!(testFraction >= 0 && testFraction < 1)) {
    throw new Error(`test fraction must be in [0, 1), got ${testFraction}`);
  }
  const ranked = [...new Set(ids)]
    .map((id) => ({ id, key: createHash('sha256').update(`${seed}:${id}`).digest('hex') }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  let testCount = Math.round(ranked.length * testFraction);
  if (testFraction > 0 && ranked.length >= 2) testCount = Math.max(1, testCount);
  testCount = Math.min(testCount, ranked.length - 1);
  const split = new Map<string, Split>();
  ranked.forEach(({ id }, i) => split.set(id, i < testCount ? 'test' : 'train'));
  return split;
}
