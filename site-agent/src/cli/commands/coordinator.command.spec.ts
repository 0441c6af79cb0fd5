// `fedsynth admin create-user` and `fedsynth coordinator` as real processes: create users, start, log in over
// HTTP, stop with SIGTERM.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from '@fedsynth/common/testing/paths';

const BIN = path.join(repoRoot(), 'site-agent', 'bin', 'fedsynth.js');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(), stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FEDSYNTH_')));
}

function waitFor(child: ChildProcess, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${pattern}; stderr: ${seen}`)),
      timeoutMs,
    );
    child.stderr!.on('data', (d) => {
      seen += d;
      const m = seen.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.on('close', (code) => reject(new Error(`exited with ${code} before ${pattern}; stderr: ${seen}`)));
  });
}

describe('fedsynth admin create-user and fedsynth coordinator', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-cli-coordinator-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates users from the command line, reading the password from stdin or generating one', async () => {
    const fromStdin = await run(
      [
        'admin',
        'create-user',
        '--username',
        'root',
        '--role',
        'admin',
        '--password-stdin',
        '--data-dir',
        dir,
      ],
      'a long admin password\n',
    );
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.match(fromStdin.stdout, /^created admin root \(id [0-9a-f-]{36}\)$/m);
    assert.doesNotMatch(fromStdin.stdout, /password/);

    const generated = await run([
      'admin',
      'create-user',
      '--username',
      'rita',
      '--role',
      'researcher',
      '--data-dir',
      dir,
    ]);
    assert.equal(generated.code, 0, generated.stderr);
    assert.match(generated.stdout, /^password: [A-Za-z0-9_-]{24}$/m);

    const dup = await run(
      [
        'admin',
        'create-user',
        '--username',
        'root',
        '--role',
        'auditor',
        '--password-stdin',
        '--data-dir',
        dir,
      ],
      'another long password',
    );
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /already exists/);
    const badRole = await run([
      'admin',
      'create-user',
      '--username',
      'x1',
      '--role',
      'god',
      '--data-dir',
      dir,
    ]);
    assert.equal(badRole.code, 2);
    assert.match(badRole.stderr, /admin|auditor|researcher/);
  });

  it('refuses to start on a bad value, naming it', async () => {
    const res = await run(['coordinator', '--port', '99999', '--data-dir', dir]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /port = "99999" \(from option port\)/);
    const db = await run(['coordinator', '--db', 'mongodb://x', '--data-dir', dir]);
    assert.equal(db.code, 2);
    assert.match(db.stderr, /db = "mongodb:\/\/x"/);
  });

  it('serves, logs its URL, accepts the CLI-created user and stops cleanly on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [BIN, 'coordinator', '--port', '0', '--host', '127.0.0.1', '--data-dir', dir, '--log-level', 'warn'],
      { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const [, url] = await waitFor(child, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
      const health = await fetch(`${url}/health`);
      assert.equal(health.status, 200);
      const login = await fetch(`${url}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'root', password: 'a long admin password' }),
      });
      assert.equal(login.status, 200);
      const stopped = waitFor(child, /stopped \(SIGTERM\)/);
      const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      child.kill('SIGTERM');
      await stopped;
      assert.equal(await exit, 0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
