// The migrations of each dialect, in order. Add new ones at the end of both lists (hand-written, one class per
// dialect, same timestamp); never edit one that has shipped.
import { InitialSchemaPostgres1764115200000 } from './postgres/1764115200000-initial-schema.js';
import { InitialSchemaSqlite1764115200000 } from './sqlite/1764115200000-initial-schema.js';

export const SQLITE_MIGRATIONS = [InitialSchemaSqlite1764115200000];
export const POSTGRES_MIGRATIONS = [InitialSchemaPostgres1764115200000];
