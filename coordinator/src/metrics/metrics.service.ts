import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The coordinator's Prometheus metrics, in a registry of its own (not prom-client's global one, so several
 * coordinators can live in one process, as in tests). Other modules inject this service and update the metrics.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  /** Sites with an open, authenticated socket connection. */
  readonly sitesConnected = new Gauge({
    name: 'fedsynth_sites_connected',
    help: 'Sites currently connected to the coordinator.',
    registers: [this.registry],
  });

  /** Finished federated rounds, by study and outcome (e.g. completed, failed, aborted). */
  readonly roundsTotal = new Counter({
    name: 'fedsynth_rounds_total',
    help: 'Federated rounds finished, by study and outcome.',
    labelNames: ['study', 'outcome'] as const,
    registers: [this.registry],
  });

  /** Bytes received from sites, by kind of payload (e.g. samples, weights, metrics). */
  readonly bytesReceivedTotal = new Counter({
    name: 'fedsynth_bytes_received_total',
    help: 'Bytes received from sites, by payload kind.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  /** Duration of coordinator and site jobs, by job kind (e.g. train-gan, segment, audit). */
  readonly jobDurationSeconds = new Histogram({
    name: 'fedsynth_job_duration_seconds',
    help: 'Duration of jobs in seconds, by job kind.',
    labelNames: ['kind'] as const,
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
