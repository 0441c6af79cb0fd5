// Train/test split by subject (never by slice: slices of one subject are near-duplicates), seeded and stable.
import { createHash } from 'node:crypto';

export type Split = 'train' | 'test';

/** A subject's position in [0, 1) for a seed: the first 52 bits of sha256(seed:id). */
function subjectKey(id: string, seed: number): number {
  return parseInt(createHash('sha256').update(`${seed}:${id}`).digest('hex').slice(0, 13), 16) / 2 ** 52;
}

/**
 * Assigns each subject to train or test on its own (test when its seeded hash falls below testFraction), so
 * the split does not depend on the order the cases were found in, and a site that adds cases later never moves
 * an existing subject across (no leakage between a model's training set and a later test set). The test share
 * is therefore testFraction on average, not exactly. With two or more subjects and testFraction > 0 there is at
 * least one test and one training subject (the lowest / highest hash is moved if needed).
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
    .map((id) => ({ id, key: subjectKey(id, seed) }))
    .sort((a, b) => a.key - b.key);
  const split = new Map<string, Split>();
  for (const { id, key } of ranked) split.set(id, key < testFraction ? 'test' : 'train');
  if (testFraction > 0 && ranked.length >= 2) {
    if (split.get(ranked[0]!.id) === 'train') split.set(ranked[0]!.id, 'test');
    if (split.get(ranked[ranked.length - 1]!.id) === 'test')
      split.set(ranked[ranked.length - 1]!.id, 'train');
  }
  return split;
}
