// The migrations of each dialect, in order. Add new ones at the end of both lists (hand-written, one class per
// dialect, same timestamp); never edit one that has shipped.
import { InitialSchemaPostgres1764115200000 } from './postgres/1764115200000-initial-schema.js';
import { InitialSchemaSqlite1764115200000 } from './sqlite/1764115200000-initial-schema.js';
import { FederationPostgres1764892800000 } from './postgres/1764892800000-federation.js';
import { FederationSqlite1764892800000 } from './sqlite/1764892800000-federation.js';
import { StudiesPostgres1765000000000 } from './postgres/1765000000000-studies.js';
import { StudiesSqlite1765000000000 } from './sqlite/1765000000000-studies.js';
import { AuditsReleasesPostgres1765100000000 } from './postgres/1765100000000-audits-releases.js';
import { AuditsReleasesSqlite1765100000000 } from './sqlite/1765100000000-audits-releases.js';
import { EvaluationsPostgres1765200000000 } from './postgres/1765200000000-evaluations.js';
import { EvaluationsSqlite1765200000000 } from './sqlite/1765200000000-evaluations.js';

export const SQLITE_MIGRATIONS = [
  InitialSchemaSqlite1764115200000,
  FederationSqlite1764892800000,
  StudiesSqlite1765000000000,
  AuditsReleasesSqlite1765100000000,
  EvaluationsSqlite1765200000000,
];
export const POSTGRES_MIGRATIONS = [
  InitialSchemaPostgres1764115200000,
  FederationPostgres1764892800000,
  StudiesPostgres1765000000000,
  AuditsReleasesPostgres1765100000000,
  EvaluationsPostgres1765200000000,
];
