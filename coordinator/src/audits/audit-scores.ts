// Pure helpers of the audit round: checking a site's scores against the pool, histograms, combining sites.
import { auditScoresSchema, type AuditScores } from '@fedsynth/common/protocol/job-payloads';
import type { AuditCombined, Histogram } from './audit.entity.js';

export const HISTOGRAM_BINS = 40;

/** Equal-width histogram of correlations over [-1, 1]. */
export function histogram(values: readonly number[], bins = HISTOGRAM_BINS, min = -1, max = 1): Histogram {
  const counts = new Array<number>(bins).fill(0);
  const width = (max - min) / bins;
  for (const v of values) {
    const bin = Math.min(bins - 1, Math.max(0, Math.floor((v - min) / width)));
    counts[bin]!++;
  }
  return { min, max, counts };
}

export class AuditScoresRefused extends Error {
  override readonly name = 'AuditScoresRefused';
}

/**
 * Parses a site's `scores` blob and checks it against the pool: one score per candidate, flagged indices inside the
 * pool. Throws AuditScoresRefused with the reason.
 */
export function parseAuditScores(text: string, candidateCount: number): AuditScores {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new AuditScoresRefused('the scores blob is not JSON');
  }
  const parsed = auditScoresSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AuditScoresRefused(
      `the scores blob does not match the audit scores format: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`,
    );
  }
  const scores = parsed.data;
  if (scores.scores.length !== candidateCount) {
    throw new AuditScoresRefused(`${scores.scores.length} scores for a pool of ${candidateCount} candidates`);
  }
  if (!Number.isFinite(scores.threshold))
    throw new AuditScoresRefused('the threshold is not a finite number');
  const outside = scores.flagged.find((i) => i >= candidateCount);
  if (outside !== undefined) throw new AuditScoresRefused(`flagged candidate ${outside} is outside the pool`);
  return scores;
}

/**
 * The candidates a site's answer withholds: those it flagged and, conservatively, any scored above its threshold
 * (the two agree for an honest site; a disagreement never releases more).
 */
export function flaggedOf(scores: AuditScores): number[] {
  const out = new Set(scores.flagged);
  scores.scores.forEach((s, i) => {
    if (s > scores.threshold) out.add(i);
  });
  return [...out].sort((a, b) => a - b);
}

/** Per candidate the maximum over sites; withheld = flagged by any site. */
export function combineSites(
  perSite: Array<{ scores: ArrayLike<number>; flagged: readonly number[] }>,
): AuditCombined {
  const n = perSite[0]?.scores.length ?? 0;
  const maxScores = new Array<number>(n).fill(-1);
  const withheld = new Set<number>();
  for (const site of perSite) {
    for (let i = 0; i < n; i++) {
      const s = site.scores[i]!;
      if (s > maxScores[i]!) maxScores[i] = s;
    }
    site.flagged.forEach((i) => withheld.add(i));
  }
  return { maxScores, histogram: histogram(maxScores), withheld: [...withheld].sort((a, b) => a - b) };
}
