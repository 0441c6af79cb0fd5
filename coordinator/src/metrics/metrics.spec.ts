import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestCoordinator, type TestCoordinator } from '../testing/test-coordinator.js';
import { MetricsService } from './metrics.service.js';

describe('GET /metrics', () => {
  let c: TestCoordinator;
  before(async () => {
    c = await startTestCoordinator('sqlite');
  });
  after(() => c?.dispose());

  it('serves the Prometheus text format with the four fedsynth metrics, without a token', async () => {
    const res = await c.request('GET', '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    for (const name of [
      'fedsynth_sites_connected',
      'fedsynth_rounds_total',
      'fedsynth_bytes_received_total',
      'fedsynth_job_duration_seconds',
    ]) {
      assert.match(res.body, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.match(res.body, /^process_cpu_user_seconds_total /m, 'default process metrics');
  });

  it('shows what other modules record through MetricsService', async () => {
    const metrics = c.app.get(MetricsService);
    metrics.sitesConnected.set(3);
    metrics.roundsTotal.inc({ study: 'brats-gan', outcome: 'completed' });
    metrics.bytesReceivedTotal.inc({ kind: 'samples' }, 1024);
    metrics.jobDurationSeconds.observe({ kind: 'segment' }, 42);
    const { body } = await c.request('GET', '/metrics');
    assert.match(body, /^fedsynth_sites_connected 3$/m);
    assert.match(body, /^fedsynth_rounds_total\{study="brats-gan",outcome="completed"\} 1$/m);
    assert.match(body, /^fedsynth_bytes_received_total\{kind="samples"\} 1024$/m);
    assert.match(body, /^fedsynth_job_duration_seconds_bucket\{le="60",kind="segment"\} 1$/m);
  });
});
