// A federation of separate processes for e2e specs (the same LocalFederation `fedsynth demo` runs): the coordinator
// on SQLite in its data dir, or on a fresh PostgreSQL schema; phantom sites; site agents as `fedsynth site run`;
// studies over REST; and a direct database connection to check what the coordinator persisted.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolveCoordinatorConfig } from '@fedsynth/coordinator/config/coordinator-config';
import { dataSourceOptions } from '@fedsynth/coordinator/database/data-source-options';
import {
  createTestDatabase,
  type TestDatabase,
  type TestDialect,
} from '@fedsynth/coordinator/testing/test-database';
import { writeDemoSites, type DemoSiteData } from '@fedsynth/site-agent/demo/demo-data';
import { LocalFederation, sleep } from '@fedsynth/site-agent/demo/local-federation';
import { DataSource } from 'typeorm';

export type Json = Record<string, unknown>;

/** Small phantom grids: generation and slicing in a fraction of a second per case. */
export const SMALL_DIMS: [number, number, number] = [128, 128, 96];

export async function phantomSites(
  out: string,
  siteSizes: number[],
  seed = 7,
  dims: [number, number, number] = SMALL_DIMS,
): Promise<DemoSiteData[]> {
  return writeDemoSites({
    out,
    sites: siteSizes.length,
    cases: siteSizes.reduce((a, b) => a + b, 0),
    siteSizes,
    seed,
    dims,
  });
}

export interface ProcessFederation {
  fed: LocalFederation;
  tmp: string;
  dialect: TestDialect;
  /** a SQL query on the coordinator's database (`?` placeholders on both dialects) */
  query<T = Json>(sql: string, params?: unknown[]): Promise<T[]>;
  study(id: string): Promise<Json>;
  /** polls the study until `done`, failing fast on failed/cancelled */
  waitForStudy(id: string, timeoutMs?: number): Promise<Json>;
  waitUntil<T>(
    probe: () => Promise<T | undefined | false>,
    what: string,
    timeoutMs?: number,
    intervalMs?: number,
  ): Promise<T>;
  createStudy(body: Json): Promise<string>;
  /** the coordinator and agents' logs, for failure messages */
  logs(): string;
  dispose(): Promise<void>;
}

export async function startProcessFederation(
  dialect: TestDialect,
  options: { prefix?: string } = {},
): Promise<ProcessFederation> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), options.prefix ?? 'fedsynth-procfed-'));
  let database: TestDatabase | undefined;
  if (dialect === 'postgres') database = await createTestDatabase('postgres');
  const fed = new LocalFederation({
    dir: tmp,
    db: database?.db,
    env: { FEDSYNTH_TF_BACKEND: process.env.FEDSYNTH_TF_BACKEND },
    siteLogLevel: 'debug',
  });
  let source: DataSource | undefined;
  const db = async () => {
    if (!source) {
      const config = resolveCoordinatorConfig({ db: fed.db, dataDir: fed.dataDir, logLevel: 'silent' });
      source = new DataSource(dataSourceOptions(config.db));
      await source.initialize();
    }
    return source;
  };
  const pf: ProcessFederation = {
    fed,
    tmp,
    dialect,
    async query<T>(sql: string, params: unknown[] = []) {
      let n = 0;
      const text = dialect === 'postgres' ? sql.replace(/\?/g, () => `$${++n}`) : sql;
      for (let attempt = 0; ; attempt++) {
        try {
          return (await (await db()).query(text, params)) as T[];
        } catch (error) {
          // SQLite: the coordinator may hold the write lock for a moment
          if (attempt < 20 && /SQLITE_BUSY|database is locked/i.test(String(error))) {
            await sleep(50);
            continue;
          }
          throw error;
        }
      }
    },
    async study(id) {
      return fed.call<Json>('get the study', 'GET', `/api/studies/${id}`);
    },
    async waitUntil(probe, what, timeoutMs = 120_000, intervalMs = 25) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        fed.assertCoordinatorAlive(what);
        const value = await probe();
        if (value !== undefined && value !== false) return value;
        if (Date.now() > deadline)
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${pf.logs()}`);
        await sleep(intervalMs);
      }
    },
    async waitForStudy(id, timeoutMs = 180_000) {
      return pf.waitUntil(
        async () => {
          const s = await pf.study(id).catch(() => undefined);
          if (s && (s.state === 'failed' || s.state === 'cancelled'))
            throw new Error(`study ${s.state}: ${String(s.error)}\n${pf.logs()}`);
          return s?.state === 'done' ? s : undefined;
        },
        `study ${id} to finish`,
        timeoutMs,
        250,
      );
    },
    async createStudy(body) {
      const created = await fed.call<Json>('create a study', 'POST', '/api/studies', body);
      return created.id as string;
    },
    logs() {
      const tail = (text: string) => text.split('\n').slice(-60).join('\n');
      const parts = [`--- coordinator ---\n${tail(fed.coordinator?.log() ?? '')}`];
      for (const site of fed.sites.values())
        parts.push(`--- ${site.name} ---\n${tail(site.agent?.log() ?? '')}`);
      return parts.join('\n');
    },
    async dispose() {
      await fed.close();
      await source?.destroy().catch(() => undefined);
      await database?.dispose();
      if (!process.env.FEDSYNTH_TEST_KEEP) await rm(tmp, { recursive: true, force: true });
      else console.error(`kept ${tmp}`);
    },
  };
  await fed.createAdmin();
  await fed.startCoordinator();
  await fed.login();
  return pf;
}

/** A small generator study body (stylegan2 'tiny' is 16²). */
export function tinyStudy(siteIds: string[], extra: Json = {}): Json {
  return {
    name: 'tiny study',
    model: { task: 'generator', model: 'stylegan2', profile: 'tiny' },
    mode: 'fedavg',
    rounds: 2,
    localSteps: 2,
    batchSize: 4,
    samplesPerSite: 16,
    roundTimeoutMs: 600_000,
    siteIds,
    seed: 3,
    ...extra,
  };
}
