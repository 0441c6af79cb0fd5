// `fedsynth demo` as a user runs it, with tiny settings: phantom sites, a coordinator and three site agents as
// processes, a FedAvg study, (utility, audit and release where the coordinator offers them), summary JSON and a
// self-contained report.html — and no process of the run left behind.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fedsynth } from '../support/cli.js';

/** Processes whose command line mentions `text` (the run folder): none may survive the demo. */
function processesMentioning(text: string): string[] {
  const out = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes(text) && !line.includes('ps -eo'));
}

describe('fedsynth demo (processes, tiny settings)', () => {
  let tmp: string;
  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('runs the federation end to end, writes summary and report, and leaves no process behind', async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-demo-'));
    const out = path.join(tmp, 'run');
    const res = await fedsynth(
      'demo',
      '--json',
      '--out',
      out,
      '--site-sizes',
      '2,2,1',
      '--dims',
      '128x128x96',
      '--generator',
      'stylegan2',
      '--rounds',
      '1',
      '--local-steps',
      '2',
      '--batch-size',
      '4',
      '--samples-per-site',
      '8',
      '--seg-steps',
      '2',
    );
    assert.equal(res.code, 0, res.stderr.slice(-4000));
    const summary = JSON.parse(res.stdout);
    assert.equal(summary.sites.length, 3);
    assert.deepEqual(
      summary.sites.map((s: { cases: number }) => s.cases),
      [2, 2, 1],
    );
    assert.equal(summary.study.rounds.length, 1);
    assert.equal(summary.study.pooled, 24);
    for (const site of summary.sites) {
      assert.equal(site.samples, 8, JSON.stringify(site));
      assert.equal(site.roundsContributed, 1);
      assert.ok(site.trainSlices > 0);
    }
    assert.match(res.stderr, /\[4\/7\] study/);
    assert.deepEqual(JSON.parse(await readFile(path.join(out, 'summary.json'), 'utf8')).study, summary.study);
    const html = await readFile(path.join(out, 'report.html'), 'utf8');
    assert.match(html, /<img src="data:image\/png;base64,/);
    for (const site of summary.sites) assert.ok(html.includes(site.name));
    if (summary.release.status === 'done') {
      assert.equal((await stat(summary.release.path)).size, summary.release.bytes);
      assert.ok(html.includes(summary.release.sha256));
    }
    // every child stopped: the coordinator's port is closed, no process mentions the run folder
    await assert.rejects(fetch(`${summary.coordinatorUrl}/health`));
    assert.deepEqual(processesMentioning(out), []);
    for (const log of [
      summary.logs.coordinator,
      ...Object.values(summary.logs.sites as Record<string, string>),
    ])
      assert.ok((await stat(log)).size > 0, `${log} written`);
  });

  it('refuses a bad option with exit code 2 before starting anything', async () => {
    const res = await fedsynth('demo', '--generator', 'gan9000', '--out', path.join(os.tmpdir(), 'never'));
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--generator must be one of/);
  });
});
