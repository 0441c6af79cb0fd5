import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ANNOTATION_OF_CANONICAL } from '../../slices/presets.js';
import {
  compareSampleSets,
  ksStatistic,
  recognisablySimilar,
  SAMPLE_QUALITY_CHANNELS,
  SAMPLE_QUALITY_LABELS,
  type SliceSet,
} from './sample-quality.js';

const SIZE = 16;
const PIXELS = SIZE * SIZE;

/** A brain square (rows/cols 2..13) with intensities 20..179 varying by pixel, slice and channel, and a tumour
 * square of side `s % 4` (slice 0 tumour-free) with NCR/ED/ET mixed, unless `tumour` is false. */
function makeSet(count: number, options: { shift?: number; tumour?: boolean } = {}): SliceSet {
  const { shift = 0, tumour = true } = options;
  const slices = new Uint8Array(count * PIXELS * 5);
  for (let s = 0; s < count; s++) {
    const side = tumour ? s % 4 : 0;
    for (let y = 2; y < 14; y++) {
      for (let x = 2; x < 14; x++) {
        const p = (s * PIXELS + y * SIZE + x) * 5;
        for (let c = 0; c < 4; c++) slices[p + c] = 20 + ((x * 7 + y * 11 + s * 13 + c * 17) % 160) + shift;
        if (x >= 5 && x < 5 + side && y >= 5 && y < 5 + side) {
          slices[p + 4] = ANNOTATION_OF_CANONICAL[((x + y) % 3) + 1]!;
        }
      }
    }
  }
  return { slices, count, size: SIZE };
}

function repeated(set: SliceSet, index: number, count: number): SliceSet {
  const bytes = PIXELS * 5;
  const slices = new Uint8Array(count * bytes);
  for (let s = 0; s < count; s++)
    slices.set(set.slices.subarray(index * bytes, (index + 1) * bytes), s * bytes);
  return { slices, count, size: set.size };
}

describe('compareSampleSets', () => {
  it('finds identical sets identical', () => {
    const real = makeSet(8);
    const report = compareSampleSets(real, makeSet(8));
    for (const name of SAMPLE_QUALITY_CHANNELS) {
      const channel = report.channels[name];
      assert.ok(Math.abs(channel.intersection - 1) < 1e-9, `${name} intersection ${channel.intersection}`);
      assert.ok(Math.abs(channel.wasserstein! - 0) < 1e-9, `${name} wasserstein ${channel.wasserstein}`);
      assert.equal(channel.real.length, 32);
      assert.ok(Math.abs(channel.real.reduce((a, b) => a + b, 0) - 1) < 1e-9);
      assert.equal(channel.realPixels, 8 * 12 * 12);
    }
    for (const name of SAMPLE_QUALITY_LABELS) {
      const label = report.labels[name];
      assert.equal(label.ks, 0, name);
      assert.equal(label.realMeanArea, label.syntheticMeanArea);
    }
    // slices 0..7 have tumour sides 0,1,2,3,0,1,2,3: mean WT area = 2·(1+4+9)/8 / 256, shown on 6 of 8 slices
    assert.ok(Math.abs(report.labels.WT.realMeanArea - 28 / 8 / PIXELS) < 1e-12);
    assert.equal(report.labels.WT.realPresence, 0.75);
    assert.equal(report.diversity.ratio, 1);
    assert.equal(report.diversity.realPairs, 28);
    assert.ok(report.diversity.realMeanRms! > 0 && report.diversity.realMeanRms! <= 1);
    assert.deepEqual(recognisablySimilar(report), { ok: true, reasons: [] });
  });

  it('samples at most maxPairs pairs, the same ones for equal sets', () => {
    const report = compareSampleSets(makeSet(25), makeSet(25), { seed: 7 });
    assert.equal(report.diversity.realPairs, 200);
    assert.equal(report.diversity.syntheticPairs, 200);
    assert.equal(report.diversity.ratio, 1);
    const reseeded = compareSampleSets(makeSet(25), makeSet(25), { seed: 8, maxPairs: 50 });
    assert.equal(reseeded.diversity.realPairs, 50);
    assert.ok(Math.abs(reseeded.diversity.ratio! - 1) < 1e-12);
  });

  it('measures a +40 intensity shift', () => {
    const report = compareSampleSets(makeSet(8), makeSet(8, { shift: 40 }));
    for (const name of SAMPLE_QUALITY_CHANNELS) {
      const channel = report.channels[name];
      assert.ok(channel.intersection < 0.9, `${name} intersection ${channel.intersection}`);
      assert.ok(Math.abs(channel.wasserstein! - 40) < 0.5, `${name} wasserstein ${channel.wasserstein}`);
    }
    assert.equal(report.labels.WT.ks, 0);
    assert.ok(Math.abs(report.diversity.ratio! - 1) < 1e-12);
  });

  it('fails a tumour-free synthetic set on WT', () => {
    const report = compareSampleSets(makeSet(8), makeSet(8, { tumour: false }));
    assert.equal(report.labels.WT.syntheticMeanArea, 0);
    assert.equal(report.labels.WT.syntheticPresence, 0);
    assert.equal(report.labels.WT.ks, 0.75);
    const verdict = recognisablySimilar(report);
    assert.equal(verdict.ok, false);
    assert.equal(verdict.reasons.length, 1);
    assert.match(verdict.reasons[0]!, /^WT:/);
  });

  it('detects mode collapse', () => {
    const real = makeSet(8);
    const report = compareSampleSets(real, repeated(real, 3, 8));
    assert.equal(report.diversity.syntheticMeanDistance, 0);
    assert.ok(report.diversity.ratio! < 1e-9);
    const verdict = recognisablySimilar(report);
    assert.equal(verdict.ok, false);
    assert.ok(
      verdict.reasons.some((r) => r.startsWith('diversity:')),
      verdict.reasons.join('; '),
    );
  });

  it('honours custom thresholds', () => {
    const report = compareSampleSets(makeSet(8), makeSet(8, { shift: 40 }));
    assert.equal(recognisablySimilar(report, { minHistogramIntersection: 0 }).ok, true);
    const strict = recognisablySimilar(report, { minHistogramIntersection: 0.95 });
    assert.deepEqual(
      strict.reasons.map((r) => r.split(':')[0]),
      ['t1', 't2', 'flair', 't1ce'],
    );
  });

  it('rejects malformed or mismatched sets', () => {
    const good = makeSet(2);
    assert.throws(() => compareSampleSets(good, { ...good, count: 3 }), RangeError);
    assert.throws(() =>
      compareSampleSets(good, { slices: new Uint8Array(2 * 8 * 8 * 5), count: 2, size: 8 }),
    );
  });
});

describe('ksStatistic', () => {
  it('matches hand-computed values', () => {
    // F_a jumps by 1/4 at 1,2,3,4; F_b by 1/5 at 3..7; largest gap at x = 4: 1 − 2/5
    assert.ok(Math.abs(ksStatistic([4, 2, 3, 1], [3, 4, 5, 6, 7])! - 0.6) < 1e-12);
    // ties: at 0 F_a = 2/3, F_b = 1/3; at 1 both 1
    assert.ok(Math.abs(ksStatistic([0, 0, 1], [0, 1, 1])! - 1 / 3) < 1e-12);
    assert.equal(ksStatistic([1, 2], [3, 4]), 1);
    assert.equal(ksStatistic([0.5, 0.1], [0.1, 0.5]), 0);
    assert.equal(ksStatistic([], [1]), null);
  });
});
