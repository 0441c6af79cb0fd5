// Train/test split by patient (never by slice: slices of one subject are near-duplicates; never by scan: BraTS
// 2023 follow-up scans of one patient are near-duplicates too), seeded and stable.
import { createHash } from 'node:crypto';

export type Split = 'train' | 'test';

/** BraTS 2023 case ids: BraTS-<cohort>-<patient>-<timepoint>, e.g. BraTS-GLI-00042-001 (cohorts like MEN-RT too). */
const TIMEPOINT_ID = /^(BraTS-[A-Za-z]+(?:-[A-Za-z]+)*-\d+)-(\d+)$/i;

/**
 * The patient a case id belongs to: a BraTS 2023 id with its timepoint zeroed (BraTS-GLI-00042-000 and -001 are
 * both 'BraTS-GLI-00042-000': the same patient, scanned twice); any other id (BraTS 2020/2021 and earlier names
 * have no timepoint; user-mapped folders) is its own patient. The key is the patient's baseline id rather than the
 * id without its timepoint so that it equals the id of every single-timepoint case (…-000, and all earlier
 * names): their split hash, and so the split of existing data, is unchanged.
 */
export function patientKey(id: string): string {
  const m = TIMEPOINT_ID.exec(id);
  return m ? `${m[1]}-${'0'.repeat(m[2]!.length)}` : id;
}

/** A patient's position in [0, 1) for a seed: the first 52 bits of sha256(seed:patient key). */
function hashKey(key: string, seed: number): number {
  return parseInt(createHash('sha256').update(`${seed}:${key}`).digest('hex').slice(0, 13), 16) / 2 ** 52;
}

/**
 * Assigns each case (subject id) to train or test by its patient (patientKey): every timepoint of a patient lands
 * on the same side. Each patient is decided on its own (test when its seeded hash falls below testFraction), so
 * the split does not depend on the order the cases were found in, and a site that adds cases later (new patients
 * or follow-up scans) never moves an existing case across (no leakage between a model's training set and a later
 * test set). The test share is therefore testFraction on average, not exactly. With two or more patients and
 * testFraction > 0 there is at least one test and one training patient (the lowest / highest hash is moved if
 * needed).
 *
 * Compatibility: before patients were grouped, each case hashed its own id. Single-timepoint cases (all BraTS
 * 2020/2021 names, and 2023 baseline …-000 cases) keep exactly their split; only a later timepoint (…-001) now
 * follows its patient's baseline, which is the point (it used to be drawn on its own).
 */
export function splitSubjects(
  ids: readonly string[],
  testFraction: number,
  seed: number,
): Map<string, Split> {
  if (!(testFraction >= 0 && testFraction < 1)) {
    throw new Error(`test fraction must be in [0, 1), got ${testFraction}`);
  }
  const cases = new Map<string, string[]>();
  for (const id of new Set(ids)) {
    const key = patientKey(id);
    cases.set(key, [...(cases.get(key) ?? []), id]);
  }
  const ranked = [...cases.keys()]
    .map((key) => ({ key, position: hashKey(key, seed) }))
    .sort((a, b) => a.position - b.position);
  const byPatient = new Map<string, Split>();
  for (const { key, position } of ranked) byPatient.set(key, position < testFraction ? 'test' : 'train');
  if (testFraction > 0 && ranked.length >= 2) {
    if (byPatient.get(ranked[0]!.key) === 'train') byPatient.set(ranked[0]!.key, 'test');
    if (byPatient.get(ranked[ranked.length - 1]!.key) === 'test')
      byPatient.set(ranked[ranked.length - 1]!.key, 'train');
  }
  const split = new Map<string, Split>();
  for (const [key, members] of cases) for (const id of members) split.set(id, byPatient.get(key)!);
  return split;
}
