// What `fedsynth demo` reports (summary.json, --json, report.html).

export interface StageOutcome {
  /** done; skipped (by a flag); not-available (the coordinator does not offer it yet) */
  status: 'done' | 'skipped' | 'not-available';
  reason?: string;
}

export interface DemoSiteSummary {
  name: string;
  siteId: string;
  cases: number;
  realSlices?: number;
  /** the FedAvg weight the site reported (its training slices) */
  trainSlices?: number;
  roundsContributed?: number;
  samples?: number;
  sampleSha256?: string;
  realPreview?: string;
  syntheticPreview?: string;
}

export interface DiceRow {
  /** e.g. 'synthetic (pool)' or 'real (FedAvg)' */
  model: string;
  /** site name, or 'mean' */
  site: string;
  subjects?: number;
  dice: Record<string, number | null>;
}

export interface AuditSummary extends StageOutcome {
  id?: string;
  candidates?: number;
  flagged?: number;
  approved?: number;
  /** per site: histogram of its max-correlation scores and its threshold */
  histograms?: { site: string; threshold?: number; bins: number[]; edges: number[] }[];
}

export interface ReleaseSummary extends StageOutcome {
  id?: string;
  version?: string | number;
  samples?: number;
  path?: string;
  sha256?: string;
  bytes?: number;
}

export interface DemoSummary {
  runDir: string;
  coordinatorUrl: string;
  settings: {
    sites: number;
    cases: number;
    generator: string;
    profile: string;
    rounds: number;
    localSteps: number;
    batchSize: number;
    samplesPerSite: number;
    /** utility: central U-Net steps and the FedAvg baseline's rounds */
    segmenterSteps?: number;
    segmenterRounds?: number;
    seed: number;
  };
  sites: DemoSiteSummary[];
  study?: {
    id: string;
    state: string;
    rounds: {
      index: number;
      contributors?: number;
      contributions: Record<string, { trainSlices?: number; finalLoss?: number; seconds?: number }>;
    }[];
    pooled: number;
  };
  utility: StageOutcome & { id?: string; rows?: DiceRow[]; ratio?: Record<string, number | null> };
  audit: AuditSummary;
  release: ReleaseSummary;
  logs: { coordinator: string; sites: Record<string, string> };
  timings: Record<string, number>;
  seconds: number;
  report?: string;
  error?: { step: string; message: string; logFile?: string };
}
