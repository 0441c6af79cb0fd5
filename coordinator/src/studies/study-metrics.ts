import { Injectable } from '@nestjs/common';
import { Gauge, Histogram } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service.js';
import { STUDY_STATES, type StudyState } from './study.entity.js';

/**
 * The studies' Prometheus metrics, in the coordinator's registry: rounds completed (MetricsService.roundsTotal),
 * studies by state, round duration.
 */
@Injectable()
export class StudyMetrics {
  readonly studies: Gauge<'state'>;
  readonly roundDurationSeconds: Histogram<'mode'>;

  constructor(readonly metrics: MetricsService) {
    this.studies = new Gauge({
      name: 'fedsynth_studies',
      help: 'Studies by state.',
      labelNames: ['state'] as const,
      registers: [metrics.registry],
    });
    this.roundDurationSeconds = new Histogram({
      name: 'fedsynth_round_duration_seconds',
      help: 'Duration of federated rounds (opened to closed) in seconds, by study mode.',
      labelNames: ['mode'] as const,
      buckets: [1, 10, 60, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600, 24 * 3600],
      registers: [metrics.registry],
    });
  }

  roundCompleted(studyId: string, mode: string, seconds: number): void {
    this.metrics.roundsTotal.inc({ study: studyId, outcome: 'completed' });
    this.roundDurationSeconds.observe({ mode }, Math.max(0, seconds));
  }

  setStudyCounts(counts: Partial<Record<StudyState, number>>): void {
    for (const state of STUDY_STATES) this.studies.set({ state }, counts[state] ?? 0);
  }
}
