// computeSubjectMetrics against an independent implementation: scipy's distance transform and numpy's
// percentile in medpy's HD95 (test/oracles/brats_metrics_oracle.py, run with Debian's /usr/bin/python3, which
// needs python3-numpy and python3-scipy). A missing python or scipy fails the test, never skips it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { repoRoot } from '../../testing/paths.js';
import { seededRandom, syntheticTumour } from './metrics-spec-helpers.js';
import { computeSubjectMetrics, type OverlapMetrics, type SubjectMetrics } from './segmentation-metrics.js';

interface OracleCase {
  name: string;
  pred: Uint8Array;
  truth: Uint8Array;
  dims: [number, number, number];
  spacing: [number, number, number];
}

type OracleResult = Pick<SubjectMetrics, 'labels' | 'regions'>;

function runOracle(cases: OracleCase[], dir: string): OracleResult[] {
  const manifest = cases.map((c, n) => {
    const pred = path.join(dir, `${n}-pred.u8`);
    const truth = path.join(dir, `${n}-truth.u8`);
    writeFileSync(pred, c.pred);
    writeFileSync(truth, c.truth);
    return { pred, truth, dims: c.dims, spacing: c.spacing };
  });
  const script = path.join(repoRoot(), 'test', 'oracles', 'brats_metrics_oracle.py');
  const run = spawnSync('/usr/bin/python3', [script], {
    input: JSON.stringify(manifest),
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  assert.equal(run.status, 0, `oracle failed: ${run.error?.message ?? run.stderr}`);
  return JSON.parse(run.stdout) as OracleResult[];
}

function cases(): OracleCase[] {
  const random = seededRandom(23);
  const noise = (voxels: number) => Uint8Array.from({ length: voxels }, () => Math.floor(random() * 4));
  const tumourTruth = syntheticTumour([96, 80, 48], [45, 40, 22], 18, 5);
  return [
    {
      name: 'offset tumours, anisotropic spacing',
      truth: tumourTruth,
      pred: syntheticTumour([96, 80, 48], [48, 38, 23], 17, 6),
      dims: [96, 80, 48],
      spacing: [1.2, 0.9, 2.5],
    },
    {
      name: 'tumours cut by the volume border, 4 mm in-plane',
      truth: syntheticTumour([48, 64, 24], [4, 40, 2], 12, 7),
      pred: syntheticTumour([48, 64, 24], [6, 37, 1], 13, 8),
      dims: [48, 64, 24],
      spacing: [4, 4, 1],
    },
    {
      name: 'label noise',
      truth: noise(24 * 20 * 12),
      pred: noise(24 * 20 * 12),
      dims: [24, 20, 12],
      spacing: [0.7, 1.9, 3.3],
    },
    {
      name: 'no enhancing tumour predicted',
      truth: tumourTruth,
      pred: tumourTruth.map((v) => (v === 3 ? 1 : v)),
      dims: [96, 80, 48],
      spacing: [1, 1, 1],
    },
  ];
}

function assertMatches(ours: OverlapMetrics, oracle: OverlapMetrics, what: string): void {
  assert.equal(ours.truthVoxels, oracle.truthVoxels, `${what} truthVoxels`);
  assert.equal(ours.predVoxels, oracle.predVoxels, `${what} predVoxels`);
  assert.ok(Math.abs(ours.dice - oracle.dice) <= 1e-12, `${what} dice ${ours.dice} vs ${oracle.dice}`);
  assert.ok(Math.abs(ours.hd95 - oracle.hd95) <= 1e-9, `${what} hd95 ${ours.hd95} vs ${oracle.hd95}`);
}

describe('computeSubjectMetrics against scipy (medpy HD95)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fedsynth-metrics-oracle-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('agrees on every label and region', () => {
    const all = cases();
    const oracle = runOracle(all, dir);
    assert.equal(oracle.length, all.length);
    all.forEach((c, n) => {
      const ours = computeSubjectMetrics(c.name, c.pred, c.truth, c.dims, c.spacing);
      for (const key of ['ET', 'ED', 'NCR'] as const) {
        assertMatches(ours.labels[key], oracle[n].labels[key], `${c.name}: label ${key}`);
      }
      for (const key of ['WT', 'TC', 'ETr'] as const) {
        assertMatches(ours.regions[key], oracle[n].regions[key], `${c.name}: region ${key}`);
      }
    });
    // The cases are not trivial: distances exist and differ between structures.
    assert.ok(oracle[0].regions.WT.hd95 > 1 && oracle[0].labels.NCR.hd95 !== oracle[0].regions.WT.hd95);
    assert.ok(oracle[3].labels.ET.predVoxels === 0 && oracle[3].labels.ET.dice === 0);
  });
});
