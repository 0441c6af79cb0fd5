// A site's state directory: its private key (site-key.jwk.json, 0600), what enrolment established (site.json,
// 0600), jobs in flight (jobs/), their scratch space (work/), downloads in progress (transfers/) and downloaded
// blobs (blobs/). One agent process per state directory (agent.lock).
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';

export const SITE_STATE_FILE = 'site.json';
export const AGENT_LOCK_FILE = 'agent.lock';

export const siteStateSchema = z.object({
  version: z.literal(1),
  siteId: z.string().min(1),
  siteName: z.string().min(1),
  /** the coordinator URL the site was given (origin and optional path prefix, no trailing slash) */
  coordinatorUrl: z.string().url(),
  /** the audience computed from that URL (never asked of the coordinator) */
  audience: z.string().min(1),
  /** thumbprint of the site key */
  kid: z.string().min(1),
  /** the site's private BraTS data (never leaves the site) */
  dataDir: z.string().min(1),
  enrolledAt: z.string(),
});
export type SiteState = z.output<typeof siteStateSchema>;

export class SiteStateError extends Error {
  override readonly name = 'SiteStateError';
}

export function siteStatePath(stateDir: string): string {
  return path.join(stateDir, SITE_STATE_FILE);
}

export function agentPaths(stateDir: string) {
  return {
    jobs: path.join(stateDir, 'jobs'),
    work: path.join(stateDir, 'work'),
    transfers: path.join(stateDir, 'transfers'),
    blobs: path.join(stateDir, 'blobs'),
    lock: path.join(stateDir, AGENT_LOCK_FILE),
  };
}

export async function readSiteState(stateDir: string): Promise<SiteState> {
  const file = siteStatePath(stateDir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SiteStateError(`${file} does not exist: enrol this site first (fedsynth site enroll)`);
    }
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SiteStateError(`${file} is not valid JSON`);
  }
  const parsed = siteStateSchema.safeParse(json);
  if (!parsed.success)
    throw new SiteStateError(`${file} is not a fedsynth site state (${parsed.error.message})`);
  return parsed.data;
}

/** Writes a JSON file atomically (temp file, fsync, rename) with mode 0600. */
export async function writeJsonFile(file: string, value: unknown): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.writeFile(JSON.stringify(value, null, 2) + '\n', 'utf8');
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(tmp, { force: true });
    throw error;
  }
  await handle.close();
  await rename(tmp, file);
}

export async function writeSiteState(stateDir: string, state: SiteState): Promise<string> {
  const file = siteStatePath(stateDir);
  await writeJsonFile(file, siteStateSchema.parse(state));
  return file;
}

/**
 * Takes the state directory for this process: refuses when another live agent holds it (two agents with one key
 * would keep superseding each other's connection). A lock left by a dead process is taken over.
 */
export async function lockStateDir(stateDir: string, pid = process.pid): Promise<() => Promise<void>> {
  const file = agentPaths(stateDir).lock;
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  for (let tries = 0; tries < 2; tries++) {
    try {
      const handle = await open(file, 'wx', 0o600);
      await handle.writeFile(`${pid}\n`);
      await handle.close();
      return async () => {
        const holder = await readFile(file, 'utf8').catch(() => '');
        if (Number(holder.trim()) === pid) await rm(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== pid && isAlive(holder)) {
        throw new SiteStateError(`another site agent (pid ${holder}) runs with state directory ${stateDir}`);
      }
      await rm(file, { force: true });
    }
  }
  throw new SiteStateError(`could not lock ${file}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
