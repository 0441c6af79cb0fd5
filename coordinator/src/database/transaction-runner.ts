import { Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';

/**
 * Runs a unit of work in a database transaction.
 *
 * better-sqlite3 gives TypeORM a single connection, so two overlapping `DataSource.transaction` calls would
 * nest as savepoints of one another instead of being isolated; on SQLite the transactions are therefore queued
 * here and run one at a time. PostgreSQL transactions run concurrently (READ COMMITTED), so code relying on
 * "exactly one wins" must use conditional updates and check the affected row count, as enrolment does.
 */
@Injectable()
export class TransactionRunner {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly dataSource: DataSource) {}

  run<T>(work: (manager: EntityManager) => Promise<T>): Promise<T> {
    if (this.dataSource.options.type !== 'better-sqlite3') return this.dataSource.transaction(work);
    const result = this.tail.then(() => this.dataSource.transaction(work));
    this.tail = result.catch(() => undefined);
    return result;
  }
}
