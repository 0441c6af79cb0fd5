// Checks of a site's evaluation summary beyond its schema, and the aggregation over sites: means over every subject
// of every site (not a mean of site means, so a site with more test subjects weighs more), per label and region.
import { evaluationSummarySchema, type EvaluationSummary } from '@fedsynth/common/protocol/index';
import type { EvaluationAggregate, ScoreTable } from './evaluation.entities.js';

export const SCORE_KEYS = ['NCR', 'ED', 'ET', 'WT', 'TC'] as const;
export type ScoreKey = (typeof SCORE_KEYS)[number];

export class SummaryRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SummaryRefusedError';
  }
}

/** The summary, parsed and checked for consistency; throws SummaryRefusedError saying what is wrong. */
export function parseEvaluationSummary(raw: unknown): EvaluationSummary {
  const parsed = evaluationSummarySchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new SummaryRefusedError(`evaluation summary does not match the contract: ${issues}`);
  }
  const s = parsed.data;
  if (s.subjects === 0) throw new SummaryRefusedError('evaluation summary has no subjects');
  if (s.perSubject.length !== s.subjects) {
    throw new SummaryRefusedError(
      `evaluation summary names ${s.subjects} subjects but lists ${s.perSubject.length} per-subject rows`,
    );
  }
  const seen = new Set<number>();
  for (const row of s.perSubject) {
    if (seen.has(row.subject)) throw new SummaryRefusedError(`subject ${row.subject} is listed twice`);
    seen.add(row.subject);
    for (const key of SCORE_KEYS) {
      const d = row.dice[key];
      const h = row.hd95[key];
      if (d !== null && !(Number.isFinite(d) && d >= 0 && d <= 1)) {
        throw new SummaryRefusedError(`subject ${row.subject}: Dice ${key} = ${d} is not in [0, 1]`);
      }
      if (h !== null && !(Number.isFinite(h) && h >= 0)) {
        throw new SummaryRefusedError(`subject ${row.subject}: HD95 ${key} = ${h} is not a distance ≥ 0`);
      }
    }
  }
  return s;
}

/** Mean of the non-null values per key (null when there is none). */
export function meanTable(rows: readonly ScoreTable[]): ScoreTable {
  const out = {} as ScoreTable;
  for (const key of SCORE_KEYS) {
    let sum = 0;
    let n = 0;
    for (const row of rows) {
      const v = row[key];
      if (v === null) continue;
      sum += v;
      n++;
    }
    out[key] = n ? sum / n : null;
  }
  return out;
}

/** Means over all subjects of all sites, and per site (from the per-subject rows, not the sites' own means). */
export function aggregateSummaries(bySite: Record<string, EvaluationSummary>): EvaluationAggregate {
  const perSite: EvaluationAggregate['perSite'] = {};
  const dice: ScoreTable[] = [];
  const hd95: ScoreTable[] = [];
  let slices = 0;
  for (const [siteId, summary] of Object.entries(bySite)) {
    const siteDice = summary.perSubject.map((r) => r.dice);
    const siteHd = summary.perSubject.map((r) => r.hd95);
    perSite[siteId] = {
      subjects: summary.subjects,
      slices: summary.slices,
      mean: { dice: meanTable(siteDice), hd95: meanTable(siteHd) },
    };
    dice.push(...siteDice);
    hd95.push(...siteHd);
    slices += summary.slices;
  }
  return {
    sites: Object.keys(bySite).length,
    subjects: dice.length,
    slices,
    mean: { dice: meanTable(dice), hd95: meanTable(hd95) },
    perSite,
  };
}
