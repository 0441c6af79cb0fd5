import { Controller, Get, Header, ServiceUnavailableException } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { Public } from '../auth/roles.decorator.js';
import { Clock } from '../core/clock.js';
import { DatabaseHealth, type DatabaseStatus } from '../database/database-health.js';
import { COORDINATOR_VERSION } from '../version.js';

export interface HealthReport {
  status: 'ok' | 'degraded';
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  database: DatabaseStatus;
}

const HealthSchema = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['ok', 'degraded'] },
    version: { type: 'string' },
    startedAt: { type: 'string', format: 'date-time' },
    uptimeSeconds: { type: 'number' },
    database: {
      type: 'object',
      properties: {
        status: { type: 'string', enum: ['up', 'down'] },
        dialect: { type: 'string', enum: ['sqlite', 'postgres'] },
        latencyMs: { type: 'number' },
        error: { type: 'string' },
      },
    },
  },
};

@ApiTags('health')
@Controller('health')
export class HealthController {
  private readonly startedAt: Date;

  constructor(
    private readonly database: DatabaseHealth,
    private readonly clock: Clock,
  ) {
    this.startedAt = clock.now();
  }

  @Public()
  @Get()
  @ApiOperation({ summary: 'Liveness and database reachability (503 when the database does not answer)' })
  @ApiOkResponse({ schema: HealthSchema })
  @ApiServiceUnavailableResponse({ schema: HealthSchema })
  @Header('Cache-Control', 'no-store')
  async health(): Promise<HealthReport> {
    const database = await this.database.ping();
    const ok = database.status === 'up';
    const report: HealthReport = {
      status: ok ? 'ok' : 'degraded',
      version: COORDINATOR_VERSION,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.max(0, (this.clock.now().getTime() - this.startedAt.getTime()) / 1000),
      database,
    };
    if (!ok) throw new ServiceUnavailableException(report);
    return report;
  }
}
