import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { squaredDistanceTransform, squaredDistancesAt, type VolumeDims } from './distance-transform.js';
import {
  bruteForceHd95,
  bruteForceSquaredDistances,
  bruteForceSurface,
  randomBoxesMask,
  randomInt,
  randomMask,
  randomSpacing,
  seededRandom,
  syntheticTumour,
} from './metrics-spec-helpers.js';
import {
  BRATS_MAX_HD95,
  computeSubjectMetrics,
  dice,
  hd95,
  LABEL_CODES,
  REGION_CODES,
  summarizeMetrics,
  type SubjectMetrics,
} from './segmentation-metrics.js';
import { collectSurfaces, percentileLinear } from './surface-distance.js';

/** A volume with `value` at the listed voxels and 0 elsewhere. */
function volumeWith(dims: VolumeDims, voxels: [number, number, number][], value = 1): Uint8Array {
  const volume = new Uint8Array(dims[0] * dims[1] * dims[2]);
  for (const [x, y, z] of voxels) volume[x + dims[0] * (y + dims[1] * z)] = value;
  return volume;
}

/** Fills the box [x0, x1] × [y0, y1] × [z0, z1] (inclusive) with `value`. */
function fillBox(volume: Uint8Array, dims: VolumeDims, from: number[], to: number[], value = 1): Uint8Array {
  for (let z = from[2]; z <= to[2]; z++) {
    for (let y = from[1]; y <= to[1]; y++) {
      for (let x = from[0]; x <= to[0]; x++) volume[x + dims[0] * (y + dims[1] * z)] = value;
    }
  }
  return volume;
}

function maskOf(labels: Uint8Array, codes: readonly number[]): Uint8Array {
  return labels.map((v) => (codes.includes(v) ? 1 : 0));
}

function assertClose(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} vs ${expected}`);
}

describe('dice', () => {
  it('is 1 for identical masks and 2|A∩B| / (|A| + |B|) otherwise', () => {
    const a = Uint8Array.from([1, 1, 1, 0, 0, 0]);
    assert.equal(dice(a, a), 1);
    assert.equal(dice(a, Uint8Array.from([0, 1, 1, 1, 1, 0])), (2 * 2) / (3 + 4));
    assert.equal(dice(a, Uint8Array.from([0, 0, 0, 1, 1, 1])), 0);
  });

  it('treats any non-zero value as inside', () => {
    assert.equal(dice(Uint8Array.from([255, 0]), Uint8Array.from([1, 0])), 1);
  });

  it('follows BraTS for empty masks: both empty 1, one empty 0', () => {
    assert.equal(dice(new Uint8Array(5), new Uint8Array(5)), 1);
    assert.equal(dice(new Uint8Array(5), Uint8Array.from([0, 0, 1, 0, 0])), 0);
  });

  it('refuses masks of different sizes', () => {
    assert.throws(() => dice(new Uint8Array(4), new Uint8Array(5)), RangeError);
  });
});

describe('hd95 on hand-computed cases', () => {
  it('is 0 for identical masks', () => {
    const dims: VolumeDims = [7, 6, 5];
    const mask = fillBox(new Uint8Array(7 * 6 * 5), dims, [1, 2, 1], [5, 4, 3]);
    assert.equal(hd95(mask, mask, dims, [1.3, 0.7, 4]), 0);
  });

  it('is the anisotropic distance between two single voxels', () => {
    const dims: VolumeDims = [5, 4, 3];
    const a = volumeWith(dims, [[0, 0, 0]]);
    const b = volumeWith(dims, [[3, 1, 2]]);
    // √((0.5·3)² + (2·1)² + (3·2)²) = √(2.25 + 4 + 36) = 6.5
    assert.equal(hd95(a, b, dims, [0.5, 2, 3]), 6.5);
    assert.equal(hd95(b, a, dims, [0.5, 2, 3]), 6.5);
    assert.equal(dice(a, b), 0);
  });

  it('gives two 4³ cubes offset by 2 voxels in x Dice 1/2 and HD95 2 voxels', () => {
    // Each surface has 4³ - 2³ = 56 voxels. From A's surface to B's: on the 12 (y, z) border lines
    // x = 2, 3, 4, 5 are 2, 1, 0, 0 voxels away; on the 4 interior lines x = 2, 5 are 2, 1 away. So each
    // direction gives 24 zeros, 16 ones, 16 twos; the 95th percentile of the 112 (index 105.45) is a two.
    const dims: VolumeDims = [12, 12, 12];
    const a = fillBox(new Uint8Array(12 ** 3), dims, [2, 2, 2], [5, 5, 5]);
    const b = fillBox(new Uint8Array(12 ** 3), dims, [4, 2, 2], [7, 5, 5]);
    assert.equal(dice(a, b), (2 * 32) / (64 + 64));
    assert.equal(hd95(a, b, dims, [1, 1, 1]), 2);
    // 1.5 mm along x: the shifts scale to 3 mm and no diagonal is shorter (√(3² + 1²) > 3).
    assert.equal(hd95(a, b, dims, [1.5, 1, 1]), 3);
    assert.equal(hd95(a, b, dims, [1.5, 1, 1]), bruteForceHd95(a, b, dims, [1.5, 1, 1]));
  });

  it('interpolates the percentile linearly between order statistics, as numpy does', () => {
    // A = {(0,0,0)}, B = {(0,0,0), (3,0,0)}: distances A→B [0], B→A [0, 3]; sorted [0, 0, 3], index 0.95·2 = 1.9,
    // so 0 + 0.9·3 = 2.7 voxels.
    const dims: VolumeDims = [5, 1, 1];
    const a = volumeWith(dims, [[0, 0, 0]]);
    const b = volumeWith(dims, [
      [0, 0, 0],
      [3, 0, 0],
    ]);
    assert.equal(dice(a, b), 2 / 3);
    assertClose(hd95(a, b, dims, [1, 1, 1]), 2.7, 1e-12, 'unit spacing');
    assertClose(hd95(a, b, dims, [2, 7, 7]), 5.4, 1e-12, '2 mm along x');
    // Bit for bit what numpy 1.24 prints for np.percentile([0., 3., 0.], 95) (the index 1.9 rounds below 1.9).
    assert.equal(percentileLinear([0, 3, 0], 95), 2.6999999999999997);
    assert.equal(percentileLinear([4], 95), 4);
    assert.equal(percentileLinear([1, 2, 3, 4, 5], 50), 3);
  });

  it('selects the same order statistics as a full sort, duplicates included', () => {
    const random = seededRandom(19);
    for (let trial = 0; trial < 200; trial++) {
      const length = randomInt(random, 1, 60);
      const distinct = randomInt(random, 1, 8);
      const values = Array.from({ length }, () => Math.sqrt(randomInt(random, 0, distinct)));
      const percent = trial % 4 === 0 ? 95 : 100 * random();
      const sorted = [...values].sort((p, q) => p - q);
      const index = (length - 1) * (percent / 100);
      const below = Math.floor(index);
      const above = Math.min(below + 1, length - 1);
      const expected = sorted[below] + (sorted[above] - sorted[below]) * (index - below);
      assertClose(percentileLinear(values, percent), expected, 1e-12, `trial ${trial}`);
    }
  });

  it('counts mask voxels on the volume border as surface', () => {
    const dims: VolumeDims = [3, 3, 3];
    const full = new Uint8Array(27).fill(1);
    const [surface] = collectSurfaces(full, dims, new Uint8Array(256).fill(1, 1), 1);
    assert.equal(surface.length, 26, 'every voxel but the centre');
    // Full volume against its centre voxel: distances from the 26 border voxels to the centre are 1 (6 faces),
    // √2 (12 edges), √3 (8 corners); from the centre to the full volume's surface, 1. Sorted 7 ones, 12 √2,
    // 8 √3; the 95th percentile of 27 (index 24.7) lies among the √3.
    assertClose(hd95(full, volumeWith(dims, [[1, 1, 1]]), dims, [1, 1, 1]), Math.sqrt(3), 1e-12, 'centre');
  });

  it('follows BraTS for empty masks: both empty 0, one empty the 373.12866 mm diagonal', () => {
    const dims: VolumeDims = [4, 4, 4];
    const empty = new Uint8Array(64);
    const one = volumeWith(dims, [[1, 2, 3]]);
    assert.equal(hd95(empty, empty, dims, [1, 1, 1]), 0);
    assert.equal(hd95(empty, one, dims, [1, 1, 1]), BRATS_MAX_HD95);
    assert.equal(hd95(one, empty, dims, [1, 1, 1]), BRATS_MAX_HD95);
    assertClose(BRATS_MAX_HD95, 373.12866, 1e-5, 'the BraTS penalty');
  });

  it('refuses volumes that do not match their dims or have a bad spacing', () => {
    assert.throws(() => hd95(new Uint8Array(8), new Uint8Array(8), [2, 2, 3], [1, 1, 1]), RangeError);
    assert.throws(() => hd95(new Uint8Array(8), new Uint8Array(8), [2, 2, 2], [1, 0, 1]), RangeError);
    assert.throws(() => hd95(new Uint8Array(8), new Uint8Array(8), [2, 2, 2], [1, NaN, 1]), RangeError);
  });
});

describe('computeSubjectMetrics: labels and regions', () => {
  const dims: [number, number, number] = [10, 8, 6];
  const spacing: [number, number, number] = [1, 1, 2];
  /** Oedema shell around a core whose left half is necrotic and right half enhancing. */
  const truth = (() => {
    const labels = new Uint8Array(10 * 8 * 6);
    fillBox(labels, dims, [1, 1, 1], [8, 6, 4], 2);
    fillBox(labels, dims, [3, 3, 2], [4, 4, 3], 1);
    fillBox(labels, dims, [5, 3, 2], [6, 4, 3], 3);
    return labels;
  })();

  it('scores a perfect prediction 1 / 0 everywhere, with voxel counts', () => {
    const metrics = computeSubjectMetrics('s1', truth, truth, dims, spacing);
    assert.equal(metrics.subject, 's1');
    for (const m of [...Object.values(metrics.labels), ...Object.values(metrics.regions)]) {
      assert.equal(m.dice, 1);
      assert.equal(m.hd95, 0);
      assert.equal(m.predVoxels, m.truthVoxels);
    }
    assert.equal(metrics.labels.NCR.truthVoxels, 8);
    assert.equal(metrics.labels.ET.truthVoxels, 8);
    assert.equal(metrics.regions.TC.truthVoxels, 16);
    assert.equal(metrics.regions.WT.truthVoxels, 8 * 6 * 4);
    assert.equal(metrics.labels.ED.truthVoxels, 8 * 6 * 4 - 16);
  });

  it('gives a prediction that swaps NCR and ET TC and WT Dice 1 but NCR and ET Dice 0', () => {
    const swapped = truth.map((v) => (v === 1 ? 3 : v === 3 ? 1 : v));
    const metrics = computeSubjectMetrics('swap', swapped, truth, dims, spacing);
    assert.equal(metrics.labels.NCR.dice, 0);
    assert.equal(metrics.labels.ET.dice, 0);
    assert.equal(metrics.labels.ED.dice, 1);
    assert.deepEqual(
      [metrics.regions.TC.dice, metrics.regions.TC.hd95, metrics.regions.WT.dice, metrics.regions.WT.hd95],
      [1, 0, 1, 0],
    );
    // The 2×2×2 halves sit side by side along x (1 mm): half of each cube's voxels are 1 mm from the other
    // cube, half 2 mm; the 95th percentile of the 16 distances is 2 mm.
    assert.equal(metrics.labels.NCR.hd95, 2);
    assert.equal(metrics.labels.ET.hd95, 2);
  });

  it('reports the ET region as the ET label (one mask, computed once)', () => {
    const swapped = truth.map((v) => (v === 1 ? 3 : v === 3 ? 1 : v));
    const metrics = computeSubjectMetrics('swap', swapped, truth, dims, spacing);
    assert.deepEqual(REGION_CODES.ETr, [LABEL_CODES.ET]);
    assert.deepEqual(metrics.regions.ETr, metrics.labels.ET);
    assert.notEqual(metrics.regions.ETr, metrics.labels.ET, 'a copy, so editing one leaves the other alone');
  });

  it('keeps WT at 1 when the union matches, while a missing label gets the BraTS penalty', () => {
    const noOedema = truth.map((v) => (v === 2 ? 1 : v));
    const metrics = computeSubjectMetrics('no-ed', noOedema, truth, dims, spacing);
    assert.equal(metrics.regions.WT.dice, 1);
    assert.equal(metrics.labels.ED.dice, 0);
    assert.equal(metrics.labels.ED.predVoxels, 0);
    assert.equal(metrics.labels.ED.hd95, BRATS_MAX_HD95);
    assert.equal(metrics.labels.ET.dice, 1);
    const tcTruth = 16;
    const tcPred = 8 * 6 * 4; // all of WT is now NCR or ET
    assert.equal(metrics.regions.TC.dice, (2 * tcTruth) / (tcTruth + tcPred));
  });

  it('scores a subject without tumour in truth or prediction 1 / 0, and a false alarm 0 / penalty', () => {
    const empty = new Uint8Array(10 * 8 * 6);
    const none = computeSubjectMetrics('none', empty, empty, dims, spacing);
    for (const m of [...Object.values(none.labels), ...Object.values(none.regions)]) {
      assert.deepEqual(m, { dice: 1, hd95: 0, truthVoxels: 0, predVoxels: 0 });
    }
    const falseAlarm = computeSubjectMetrics('fa', volumeWith(dims, [[2, 2, 2]], 3), empty, dims, spacing);
    assert.deepEqual(falseAlarm.labels.ET, { dice: 0, hd95: BRATS_MAX_HD95, truthVoxels: 0, predVoxels: 1 });
    assert.deepEqual(falseAlarm.labels.NCR, { dice: 1, hd95: 0, truthVoxels: 0, predVoxels: 0 });
    assert.equal(falseAlarm.regions.WT.hd95, BRATS_MAX_HD95);
  });

  it('refuses labels outside the canonical 0..3 and mismatched volumes', () => {
    assert.throws(
      () =>
        computeSubjectMetrics(
          'bad',
          truth.map((v) => (v === 3 ? 4 : v)),
          truth,
          dims,
          spacing,
        ),
      /0\.\.3/,
    );
    assert.throws(() => computeSubjectMetrics('bad', truth.subarray(1), truth, dims, spacing), RangeError);
  });

  it('matches masks scored one by one with brute-force HD95 on random label volumes', () => {
    const random = seededRandom(7);
    for (let trial = 0; trial < 12; trial++) {
      const volumeDims: [number, number, number] = [
        randomInt(random, 1, 9),
        randomInt(random, 1, 9),
        randomInt(random, 1, 7),
      ];
      const voxels = volumeDims[0] * volumeDims[1] * volumeDims[2];
      const labelsOf = (density: number) =>
        Uint8Array.from({ length: voxels }, () => (random() < density ? randomInt(random, 1, 3) : 0));
      const pred = labelsOf(random());
      const truthLabels = labelsOf(random());
      const voxelSpacing = randomSpacing(random);
      const metrics = computeSubjectMetrics(`r${trial}`, pred, truthLabels, volumeDims, voxelSpacing);
      const structures = {
        NCR: metrics.labels.NCR,
        ED: metrics.labels.ED,
        ET: metrics.labels.ET,
        WT: metrics.regions.WT,
        TC: metrics.regions.TC,
      };
      const codes = { NCR: [1], ED: [2], ET: [3], WT: [1, 2, 3], TC: [1, 3] };
      for (const [name, m] of Object.entries(structures)) {
        const a = maskOf(pred, codes[name as keyof typeof codes]);
        const b = maskOf(truthLabels, codes[name as keyof typeof codes]);
        const what = `trial ${trial} ${name}`;
        assert.equal(m.dice, dice(a, b), what);
        assert.equal(
          m.predVoxels,
          a.reduce((s, v) => s + v, 0),
          what,
        );
        assert.equal(
          m.truthVoxels,
          b.reduce((s, v) => s + v, 0),
          what,
        );
        const expected =
          a.includes(1) && b.includes(1)
            ? bruteForceHd95(a, b, volumeDims, voxelSpacing)
            : hd95(a, b, volumeDims, voxelSpacing);
        assertClose(m.hd95, expected, 1e-9, what);
      }
    }
  });

  it('scores a realistic 240×240×155 subject quickly', () => {
    const full: [number, number, number] = [240, 240, 155];
    const truthVolume = syntheticTumour(full, [110, 130, 70], 30, 1);
    const predVolume = syntheticTumour(full, [113, 128, 71], 28, 2);
    const started = performance.now();
    const metrics = computeSubjectMetrics('big', predVolume, truthVolume, full, [1, 1, 1]);
    const elapsed = performance.now() - started;
    for (const m of [...Object.values(metrics.labels), ...Object.values(metrics.regions)]) {
      assert.ok(m.dice > 0.3 && m.dice < 1, `dice ${m.dice}`);
      assert.ok(m.hd95 > 0 && m.hd95 < 20, `hd95 ${m.hd95}`);
    }
    // Generous: measured well under a second; only a regression to brute force (minutes) should trip it.
    assert.ok(elapsed < 5000, `${elapsed.toFixed(0)} ms`);
  });
});

describe('summarizeMetrics', () => {
  const subject = (name: string, d: number, h: number): SubjectMetrics => {
    const m = { dice: d, hd95: h, truthVoxels: 1, predVoxels: 1 };
    return { subject: name, labels: { ET: m, ED: m, NCR: m }, regions: { WT: m, TC: m, ETr: m } };
  };

  it('takes the mean and numpy-style median over subjects, penalties included', () => {
    const summary = summarizeMetrics([
      subject('a', 0.5, 2),
      subject('b', 1, 0),
      subject('c', 0, BRATS_MAX_HD95),
    ]);
    assert.equal(summary.subjects, 3);
    assert.equal(summary.mean.labels.ET.dice, 0.5);
    assertClose(summary.mean.regions.ETr.hd95, (2 + BRATS_MAX_HD95) / 3, 1e-12, 'mean hd95');
    assert.deepEqual(summary.median.regions.WT, { dice: 0.5, hd95: 2 });
    const even = summarizeMetrics([
      subject('a', 0.5, 2),
      subject('b', 1, 0),
      subject('c', 0, 9),
      subject('d', 0.9, 4),
    ]);
    assert.deepEqual(even.median.labels.NCR, { dice: (0.5 + 0.9) / 2, hd95: (2 + 4) / 2 });
  });

  it('summarizes each label and region from its own column', () => {
    const a = subject('a', 1, 0);
    const b: SubjectMetrics = {
      ...subject('b', 1, 0),
      labels: { ...a.labels, ED: { dice: 0, hd95: 8, truthVoxels: 1, predVoxels: 0 } },
    };
    const summary = summarizeMetrics([a, b]);
    assert.deepEqual(summary.mean.labels.ED, { dice: 0.5, hd95: 4 });
    assert.deepEqual(summary.mean.labels.ET, { dice: 1, hd95: 0 });
    assert.deepEqual(summary.mean.regions.WT, { dice: 1, hd95: 0 });
  });

  it('refuses an empty list', () => {
    assert.throws(() => summarizeMetrics([]), RangeError);
  });
});

describe('distance transform and HD95 against brute force', () => {
  it('gives the exact squared distances on random masks with random spacing', () => {
    const random = seededRandom(11);
    for (let trial = 0; trial < 60; trial++) {
      const dims: VolumeDims = [randomInt(random, 1, 10), randomInt(random, 1, 10), randomInt(random, 1, 10)];
      const voxels = dims[0] * dims[1] * dims[2];
      const density = [0, 0.01, 0.05, 0.2, 0.6, 1][trial % 6];
      const sites = randomMask(random, voxels, density);
      const spacing = randomSpacing(random);
      const fast = squaredDistanceTransform(sites, dims, spacing);
      const slow = bruteForceSquaredDistances(sites, dims, spacing);
      for (let i = 0; i < voxels; i++) {
        if (slow[i] === Infinity) assert.equal(fast[i], Infinity, `trial ${trial} voxel ${i}`);
        else assertClose(fast[i], slow[i], 1e-9, `trial ${trial} voxel ${i}`);
      }
    }
  });

  it('reads the same distances at chosen query voxels, and wants increasing indices', () => {
    const random = seededRandom(29);
    for (let trial = 0; trial < 20; trial++) {
      const dims: VolumeDims = [randomInt(random, 1, 12), randomInt(random, 1, 12), randomInt(random, 1, 12)];
      const voxels = dims[0] * dims[1] * dims[2];
      const sites = randomMask(random, voxels, 0.03);
      const spacing = randomSpacing(random);
      const everywhere = bruteForceSquaredDistances(sites, dims, spacing);
      const siteIndices = Int32Array.from({ length: voxels }, (_, i) => i).filter((i) => sites[i] !== 0);
      const queries = Int32Array.from({ length: voxels }, (_, i) => i).filter(() => random() < 0.3);
      const atQueries = squaredDistancesAt(siteIndices, queries, dims, spacing);
      queries.forEach((q, n) => {
        if (everywhere[q] === Infinity) assert.equal(atQueries[n], Infinity);
        else assertClose(atQueries[n], everywhere[q], 1e-9, `trial ${trial} voxel ${q}`);
      });
    }
    assert.throws(
      () => squaredDistancesAt(Int32Array.of(3, 1), Int32Array.of(0), [4, 1, 1], [1, 1, 1]),
      /increasing/,
    );
    assert.throws(
      () => squaredDistancesAt(Int32Array.of(1), Int32Array.of(4), [4, 1, 1], [1, 1, 1]),
      /below 4/,
    );
  });

  it('finds the surface the definition describes', () => {
    const random = seededRandom(13);
    for (let trial = 0; trial < 20; trial++) {
      const dims: VolumeDims = [randomInt(random, 1, 9), randomInt(random, 1, 9), randomInt(random, 1, 9)];
      const mask =
        trial % 2 === 0
          ? randomMask(random, dims[0] * dims[1] * dims[2], 0.7)
          : randomBoxesMask(random, dims, 2);
      const [surface] = collectSurfaces(mask, dims, new Uint8Array(256).fill(1, 1), 1);
      const expected = bruteForceSurface(mask, dims).map(([x, y, z]) => x + dims[0] * (y + dims[1] * z));
      assert.deepEqual(Array.from(surface), expected, `trial ${trial}`);
    }
  });

  it('gives the brute-force HD95 on random masks with random spacing', () => {
    const random = seededRandom(17);
    for (let trial = 0; trial < 60; trial++) {
      const dims: VolumeDims = [randomInt(random, 1, 12), randomInt(random, 1, 12), randomInt(random, 1, 8)];
      const voxels = dims[0] * dims[1] * dims[2];
      const makeMask = (): Uint8Array =>
        trial % 3 === 0
          ? randomMask(random, voxels, 0.05 + 0.5 * random())
          : randomBoxesMask(random, dims, randomInt(random, 1, 3));
      const a = makeMask();
      const b = makeMask();
      if (!a.includes(1) || !b.includes(1)) continue;
      const spacing = randomSpacing(random);
      assertClose(hd95(a, b, dims, spacing), bruteForceHd95(a, b, dims, spacing), 1e-9, `trial ${trial}`);
    }
  });
});
