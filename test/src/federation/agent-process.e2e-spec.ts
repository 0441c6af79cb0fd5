// The site agent as an operator runs it: `fedsynth site enroll` and `fedsynth site run` as separate processes
// against an in-process coordinator. A job completes; Ctrl-C stops the agent mid-upload and the next run resumes the
// persisted job and its upload; a second agent on the same state is refused; revocation ends the agent (exit 3).
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from '@fedsynth/common/testing/paths';
import { BlobRecord } from '@fedsynth/coordinator/blobs/blob-record.entity';
import { SiteConnections } from '@fedsynth/coordinator/federation/site-connections';
import { SiteSession } from '@fedsynth/coordinator/federation/site-session.entity';
import { testDialects } from '@fedsynth/coordinator/testing/test-database';
import { echoSha256 } from '@fedsynth/site-agent/agent/index';
import { type Federation, startFederation, waitFor } from './federation-harness.js';

const exec = promisify(execFile);
const bin = path.join(repoRoot(), 'site-agent', 'bin', 'fedsynth.js');
const MB = 1024 * 1024;

async function fedsynth(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await exec(process.execPath, [bin, ...args], {
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

interface AgentProcess {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

function runAgent(args: string[]): AgentProcess {
  const child = spawn(process.execPath, [bin, 'site', 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, log: () => log, exited };
}

for (const dialect of testDialects()) {
  describe(`fedsynth site enroll / site run as processes (${dialect})`, () => {
    let fed: Federation;
    const running: AgentProcess[] = [];

    before(async () => {
      fed = await startFederation(dialect);
    });
    after(async () => {
      for (const p of running) p.child.kill('SIGKILL');
      await fed?.dispose();
    });

    it('enrols, runs jobs, stops on SIGINT mid-upload, resumes the job on the next run, exits 3 when revoked', async () => {
      const { siteId, token } = await fed.createSite('process-site');
      const stateDir = path.join(fed.tmp, 'process-state');
      const dataDir = path.join(fed.tmp, 'process-data');
      await mkdir(dataDir);
      const enrollArgs = ['site', 'enroll', '--coordinator', fed.url, '--site-id', siteId, '--data', dataDir];
      const enrolled = await fedsynth([...enrollArgs, '--state', stateDir, '--name', 'process-site'], {
        FEDSYNTH_ENROLLMENT_TOKEN: token,
      });
      assert.equal(enrolled.code, 0, enrolled.stderr);
      assert.match(enrolled.stdout, /enrolled site process-site/);
      assert.equal((await stat(path.join(stateDir, 'site-key.jwk.json'))).mode & 0o777, 0o600);
      const state = JSON.parse(await readFile(path.join(stateDir, 'site.json'), 'utf8'));
      assert.equal(state.audience, fed.coordinator.config.audience);
      const again = await fedsynth([...enrollArgs, '--state', stateDir, '--token', token]);
      assert.equal(again.code, 2);
      assert.match(again.stderr, /already holds an enrolled site/);

      // run: hello with the real backend probe, a job done
      const first = runAgent(['--state', stateDir, '--chunk-size', '65536', '--max-upload-rate', '2MB']);
      running.push(first);
      await waitFor(
        () => fed.app.get(SiteConnections).readyForSite(siteId),
        'the agent process to say hello',
      );
      const session = await fed.db().getRepository(SiteSession).findOneByOrFail({ siteId });
      assert.equal(session.capabilities.backends.length, 1, JSON.stringify(session.capabilities));
      assert.deepEqual([...session.capabilities.jobKinds].sort(), [
        'audit',
        'echo-upload',
        'evaluate',
        'sample',
        'train-round',
      ]);
      const quick = await fed.jobs().enqueue(siteId, 'echo-upload', { bytes: 300_000, seed: 'process' });
      await waitFor(async () => (await fed.jobs().get(quick.id)).state === 'done', 'the first job', 20_000);
      assert.equal(
        (await fed.jobs().get(quick.id)).result?.outputs[0]?.sha256,
        echoSha256('process', 300_000),
      );

      // one agent per state directory
      const second = runAgent(['--state', stateDir]);
      assert.equal(await second.exited, 2);
      assert.match(second.log(), /another site agent \(pid \d+\)/);

      // Ctrl-C in the middle of an upload (2 MB/s, 6 MiB): the job stays persisted at the site, leased at the coordinator
      const slow = await fed.jobs().enqueue(siteId, 'echo-upload', { bytes: 6 * MB, seed: 'interrupted' });
      await waitFor(
        async () => ((await fed.jobs().get(slow.id)).progress?.fraction ?? 0) >= 0.4,
        'the upload to get going',
        20_000,
      );
      first.child.kill('SIGINT');
      assert.equal(await first.exited, 0, first.log());
      assert.match(first.log(), /stopping \(SIGINT\)/);
      const paused = await fed.jobs().get(slow.id);
      assert.equal(paused.state, 'uploading');
      await waitFor(
        async () =>
          (await fed.db().getRepository(SiteSession).findOneByOrFail({ id: session.id })).disconnectedAt,
        'the session to close',
      );

      // the next run reports the job in its hello, resumes the upload where the coordinator's staging left off
      const resumed = runAgent(['--state', stateDir, '--chunk-size', '65536']);
      running.push(resumed);
      await waitFor(async () => (await fed.jobs().get(slow.id)).state === 'done', 'the resumed job', 30_000);
      const done = await fed.jobs().get(slow.id);
      assert.equal(done.attempt, 1, 'resumed, not restarted');
      assert.equal(done.result?.outputs[0]?.sha256, echoSha256('interrupted', 6 * MB));
      assert.equal(await fed.db().getRepository(BlobRecord).countBy({ jobId: slow.id }), 1);
      const resumedFrom =
        /uploaded echo \(6291456 bytes, (\d+) chunk message\(s\), \d+ attempt\(s\), resumed from (\d+) bytes\)/.exec(
          resumed.log(),
        );
      assert.ok(resumedFrom, resumed.log());
      const [sentAgain, heldBytes] = [Number(resumedFrom[1]), Number(resumedFrom[2])];
      assert.ok(heldBytes >= 0.25 * 6 * MB && heldBytes < 6 * MB, `resumed from ${heldBytes} bytes`);
      assert.ok(sentAgain > 0 && sentAgain < 96, `${sentAgain} of 96 chunks sent by the second run`);
      assert.match(resumed.log(), /1 job\(s\) in flight from the previous run/);

      // revoked: the agent is disconnected, its reconnect refused, and it exits 3
      const res = await fed.coordinator.request('POST', `/api/sites/${siteId}/revoke`, { token: fed.admin });
      assert.equal(res.status, 200);
      assert.equal(await resumed.exited, 3, resumed.log());
      assert.match(resumed.log(), /revoked/);
      if (process.env.FEDSYNTH_TEST_LOG) console.error(first.log() + '\n-----\n' + resumed.log());
    });
  });
}
