import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SiteStateError, agentPaths, lockStateDir, readSiteState, writeSiteState } from './site-state.js';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-state-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('site.json round trip (0600); missing or broken state is explained', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(
    readSiteState(dir),
    (e: unknown) => e instanceof SiteStateError && /enrol this site first/.test(e.message),
  );
  const state = {
    version: 1 as const,
    siteId: 'b9a3c1de-0000-4000-8000-000000000001',
    siteName: 'alpha',
    coordinatorUrl: 'https://coordinator.example.org',
    audience: 'fedsynth-coordinator:coordinator.example.org:443',
    kid: 'kid',
    dataDir: '/data/brats',
    enrolledAt: new Date(0).toISOString(),
  };
  const file = await writeSiteState(dir, state);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await readSiteState(dir), state);
  await writeFile(file, JSON.stringify({ ...state, coordinatorUrl: 'not a url' }));
  await assert.rejects(readSiteState(dir), /not a fedsynth site state/);
  await writeFile(file, '{');
  await assert.rejects(readSiteState(dir), /not valid JSON/);
});

test('one agent per state directory; a lock left by a dead process is taken over', async (t) => {
  const dir = await tempDir(t);
  const release = await lockStateDir(dir);
  assert.equal((await readFile(agentPaths(dir).lock, 'utf8')).trim(), String(process.pid));
  // another live process holds it
  await writeFile(agentPaths(dir).lock, `${process.ppid}\n`);
  await assert.rejects(lockStateDir(dir), /another site agent \(pid \d+\)/);
  // a dead process held it
  const dead = spawnSync(process.execPath, [
    '-e',
    'process.stdout.write(String(process.pid))',
  ]).stdout.toString();
  await writeFile(agentPaths(dir).lock, `${dead}\n`);
  const again = await lockStateDir(dir);
  await again();
  await release(); // not ours any more: leaves nothing behind either way
  await assert.rejects(stat(agentPaths(dir).lock), { code: 'ENOENT' });
});
