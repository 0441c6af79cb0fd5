// `fedsynth demo` as a user runs it, with tiny settings: phantom sites, a coordinator and three site agents as
// processes, a FedAvg study, the utility comparison, the audit at every site, approval, release and download, summary JSON and a
// self-contained report.html — and no process of the run left behind.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
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
      '2,3,2',
      '--dims',
      '128x128x96',
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
      [2, 3, 2],
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
    // utility: the three arms evaluated at the sites' test subjects
    assert.equal(summary.utility.status, 'done', JSON.stringify(summary.utility));
    assert.deepEqual(
      summary.utility.rows.map((r: { model: string }) => r.model),
      ['synthetic pool (central)', 'real slices (FedAvg)', 'real + synthetic (FedAvg)'],
    );
    for (const row of summary.utility.rows) {
      assert.ok(row.subjects >= 3, `${row.model}: one test subject per site at least`);
      for (const k of ['WT', 'TC', 'ET'])
        assert.ok(row.dice[k] >= 0 && row.dice[k] <= 1, `${row.model} ${k}`);
    }
    assert.match(html, /Utility: segmentation Dice/);
    // audit at every site, approved; release built, downloaded, checksummed
    assert.equal(summary.audit.status, 'done', JSON.stringify(summary.audit));
    assert.equal(summary.audit.candidates, 24);
    assert.equal(summary.audit.flagged + summary.audit.approved, 24);
    assert.deepEqual(summary.audit.histograms.map((h: { site: string }) => h.site).sort(), [
      'site-1',
      'site-2',
      'site-3',
    ]);
    assert.equal((html.match(/<svg /g) ?? []).length >= 3, true, 'a histogram per site');
    assert.equal(summary.release.status, 'done', JSON.stringify(summary.release));
    assert.equal(summary.release.samples, summary.audit.approved);
    const tar = await readFile(summary.release.path);
    assert.equal(tar.length, summary.release.bytes);
    assert.equal(createHash('sha256').update(tar).digest('hex'), summary.release.sha256);
    assert.ok(html.includes(summary.release.sha256));
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
    // every site needs a training and a held-out test subject
    const small = await fedsynth('demo', '--site-sizes', '3,1', '--out', path.join(os.tmpdir(), 'never'));
    assert.equal(small.code, 2);
    assert.match(small.stderr, /--site-sizes must be an integer ≥ 2, got "1"/);
    const few = await fedsynth(
      'demo',
      '--sites',
      '3',
      '--cases',
      '5',
      '--out',
      path.join(os.tmpdir(), 'never'),
    );
    assert.equal(few.code, 2);
    assert.match(few.stderr, /--cases must be at least 2 per site/);
  });
});
