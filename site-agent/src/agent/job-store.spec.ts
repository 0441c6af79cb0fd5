import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { type JobRecord, JobStore } from './job-store.js';

function record(id: string, state: JobRecord['state'] = 'running'): JobRecord {
  return {
    version: 1,
    job: { id, kind: 'echo-upload', attempt: 2, leaseExpiresAt: 1, payload: { bytes: 1 } },
    state,
    uploads: {},
    updatedAt: 0,
  };
}

test('persists job records (0600), lists them back, drops unreadable ones, removes', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-jobstore-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = new JobStore(path.join(dir, 'jobs'));
  assert.deepEqual(await store.list(), []);
  const a = record('job-a');
  await store.save(a);
  a.uploads.echo = {
    transferId: 'transfer-1',
    sha256: 'a'.repeat(64),
    size: 5,
    kind: 'job-output',
    committed: false,
  };
  a.state = 'reporting';
  // concurrent saves of one job are written in order: the last one wins
  await Promise.all([store.save({ ...a, state: 'running' }), store.save(a)]);
  await store.save(record('job-b', 'accepting'));
  assert.equal((await stat(path.join(dir, 'jobs', 'job-a.json'))).mode & 0o777, 0o600);
  await writeFile(path.join(dir, 'jobs', 'job-c.json'), '{ torn');
  const listed = await store.list();
  assert.deepEqual(
    listed.map((r) => [r.job.id, r.state]),
    [
      ['job-a', 'reporting'],
      ['job-b', 'accepting'],
    ],
  );
  assert.equal(listed[0]!.uploads.echo!.transferId, 'transfer-1');
  assert.deepEqual(
    (await readdir(path.join(dir, 'jobs'))).sort(),
    ['job-a.json', 'job-b.json'],
    'the torn file is gone',
  );
  await store.remove('job-a');
  assert.deepEqual(
    (await store.list()).map((r) => r.job.id),
    ['job-b'],
  );
  await assert.rejects(store.save(record('../escape')), /bad job id/);
});
