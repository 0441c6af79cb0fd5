import type { Audit, AuditSiteState, AuditState, Histogram, ReferenceKind } from './audit.entity.js';

export interface AuditSiteReport {
  siteId: string;
  siteName: string;
  state: AuditSiteState;
  jobId: string | null;
  threshold: number | null;
  flaggedCount: number;
  flagged: number[];
  maxScore: number | null;
  referenceCount: number | null;
  /** 'held-out' or 'leave-one-subject-out' once scored (results stored before the field: 'held-out'); else null */
  referenceKind: ReferenceKind | null;
  scoreHistogram: Histogram | null;
  referenceHistogram: Histogram | null;
  error: string | null;
}

export interface AuditReport {
  id: string;
  studyId: string;
  state: AuditState;
  margin: number;
  candidates: number;
  poolSha256: string;
  sources: Array<{ siteId: string; jobId: string; first: number; count: number; generator: string }>;
  sites: AuditSiteReport[];
  combined: {
    histogram: Histogram;
    withheldCount: number;
    releasable: number;
  } | null;
  /** every withheld candidate: its combined score, which sites flagged it, and a PNG of the synthetic slice */
  flaggedCandidates: Array<{ index: number; maxScore: number; sites: string[]; png: string }>;
  error: string | null;
  decision: { approved: boolean; by: string | null; comment: string | null; at: string } | null;
  createdAt: string;
  updatedAt: string;
}

export function toAuditReport(a: Audit): AuditReport {
  const flaggedBy = new Map<number, string[]>();
  for (const s of a.siteResults)
    for (const i of s.flagged ?? []) flaggedBy.set(i, [...(flaggedBy.get(i) ?? []), s.siteName]);
  const withheld = a.combined?.withheld ?? [...flaggedBy.keys()].sort((x, y) => x - y);
  return {
    id: a.id,
    studyId: a.studyId,
    state: a.state,
    margin: a.margin,
    candidates: a.candidateCount,
    poolSha256: a.poolSha256,
    sources: a.sources.map(({ siteId, jobId, first, count, generator }) => ({
      siteId,
      jobId,
      first,
      count,
      generator,
    })),
    sites: a.siteResults.map((s) => ({
      siteId: s.siteId,
      siteName: s.siteName,
      state: s.state,
      jobId: s.jobId,
      threshold: s.threshold ?? null,
      flaggedCount: s.flagged?.length ?? 0,
      flagged: s.flagged ?? [],
      maxScore: s.maxScore ?? null,
      referenceCount: s.referenceCount ?? null,
      referenceKind: s.referenceKind ?? (s.state === 'scored' ? 'held-out' : null),
      scoreHistogram: s.scoreHistogram ?? null,
      referenceHistogram: s.referenceHistogram ?? null,
      error: s.error ?? null,
    })),
    combined: a.combined
      ? {
          histogram: a.combined.histogram,
          withheldCount: a.combined.withheld.length,
          releasable: a.candidateCount - a.combined.withheld.length,
        }
      : null,
    flaggedCandidates: withheld.map((index) => ({
      index,
      maxScore: a.combined?.maxScores[index] ?? NaN,
      sites: flaggedBy.get(index) ?? [],
      png: `/api/audits/${a.id}/candidates/${index}.png`,
    })),
    error: a.error,
    decision:
      a.decidedAt && (a.state === 'approved' || a.state === 'rejected')
        ? {
            approved: a.state === 'approved',
            by: a.decidedBy,
            comment: a.decisionComment,
            at: a.decidedAt.toISOString(),
          }
        : null,
    createdAt: a.createdAt.toISOString(),
    updatedAt: a.updatedAt.toISOString(),
  };
}
