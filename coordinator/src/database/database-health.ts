import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

export interface DatabaseStatus {
  status: 'up' | 'down';
  dialect: 'sqlite' | 'postgres';
  latencyMs: number;
  error?: string;
}

/** A round trip to the database, for /health. */
@Injectable()
export class DatabaseHealth {
  constructor(private readonly dataSource: DataSource) {}

  async ping(): Promise<DatabaseStatus> {
    const dialect = this.dataSource.options.type === 'postgres' ? 'postgres' : 'sqlite';
    const started = performance.now();
    try {
      await this.dataSource.query('SELECT 1');
      return { status: 'up', dialect, latencyMs: Math.round((performance.now() - started) * 100) / 100 };
    } catch (error) {
      return {
        status: 'down',
        dialect,
        latencyMs: Math.round(performance.now() - started),
        error: (error as Error).message,
      };
    }
  }
}
