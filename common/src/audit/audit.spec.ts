import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writePhantomSites } from '../phantom/index.js';
import { buildSliceStore } from '../slices/slice-pipeline.js';
import { SliceStoreReader, SliceStoreWriter } from '../slices/slice-store.js';
import { patientKey } from '../slices/subject-split.js';
import { createRng } from '../util/rng.js';
import { plantedSet, writeCandidateStore, PERTURBATIONS } from './audit-fixtures.js';
import { writeAuditFixtureStores } from './audit-test-stores.js';
import {
  PrivateIndex,
  resolveSettings,
  runAudit,
  scoreQueries,
  auditThreshold,
  quantile,
  planReference,
  isAuditReferenceError,
} from './audit.js';
import { runAuditInWorker } from './run-in-worker.js';
import {
  allocPrivates,
  allocQueries,
  imageOf,
  MASK_LEVEL,
  pairScore,
  preparePrivate,
  prepareQuery,
} from './vectors.js';

/** Textbook Pearson over the query's foreground (mean image intensity > MASK_LEVEL), in doubles, on raw bytes. */
function directPearson(
  a: Uint8Array,
  ai: number,
  b: Uint8Array,
  bi: number,
  size: number,
  channels: number,
): number {
  const values: Array<[number, number]> = [];
  const fg: number[] = [];
  for (let p = 0; p < size * size; p++) {
    let sum = 0;
    for (let c = 0; c < 4; c++) sum += a[(ai * size * size + p) * channels + c]!;
    if (sum / 4 > MASK_LEVEL) fg.push(p);
  }
  const pixels = fg.length >= 0.01 * size * size ? fg : Array.from({ length: size * size }, (_, p) => p);
  for (const p of pixels) {
    for (let c = 0; c < 4; c++) {
      values.push([a[(ai * size * size + p) * channels + c]!, b[(bi * size * size + p) * channels + c]!]);
    }
  }
  const mx = values.reduce((s, v) => s + v[0], 0) / values.length;
  const my = values.reduce((s, v) => s + v[1], 0) / values.length;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (const [x, y] of values) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
    syy += (y - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}

describe('memorization audit on phantom slices', () => {
  let root: string;
  let privateFile: string;
  let otherFile: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-audit-'));
    ({ privateFile, otherFile } = await writeAuditFixtureStores(root, {
      cases: 7,
      siteSizes: [5, 2],
      seed: 21,
      naming: '2021',
      preset: 'cpu64',
      splitSeed: 2,
    }));
  });
  after(async () => rm(root, { recursive: true, force: true }));

  it('the masked Pearson of the prepared vectors matches the direct formula', async () => {
    const store = await SliceStoreReader.open(privateFile);
    try {
      const { size } = store.meta;
      const channels = store.meta.channels.length;
      const geometry = { size, channels };
      const data = await store.readRange(0, store.count);
      const rng = createRng(4);
      const q = allocQueries(size * size, 1);
      const p = allocPrivates(size * size, 1);
      for (let k = 0; k < 20; k++) {
        const a = rng.int(store.count);
        const b = rng.int(store.count);
        q.n[0] = prepareQuery(imageOf(data, a, geometry), size * size, q.centred, q.mask, 0);
        preparePrivate(imageOf(data, b, geometry), size * size, p.values, p.sums, p.squares, 0);
        const got = pairScore(q, 0, p, 0);
        assert.ok(
          Math.abs(got - directPearson(data, a, data, b, size, channels)) < 1e-5,
          `pair ${a}, ${b}: ${got}`,
        );
      }
      q.n[0] = prepareQuery(imageOf(data, 3, geometry), size * size, q.centred, q.mask, 0);
      preparePrivate(imageOf(data, 3, geometry), size * size, p.values, p.sums, p.squares, 0);
      assert.ok(Math.abs(pairScore(q, 0, p, 0) - 1) < 1e-5, 'a slice correlates 1 with itself');
    } finally {
      await store.close();
    }
  });

  it('imageOf mirrors, shifts and area-averages like the naive definition', async () => {
    const store = await SliceStoreReader.open(privateFile);
    try {
      const { size } = store.meta;
      const channels = store.meta.channels.length;
      const data = await store.readRange(0, 3);
      for (const [mirror, dx, dy, factor] of [
        [false, 0, 0, 1],
        [true, 3, -2, 1],
        [false, -5, 4, 4],
        [true, 2, 7, 4],
      ] as const) {
        const got = imageOf(data, 2, { size, channels }, { mirror, dx, dy, factor });
        const side = size / factor;
        const want = new Float64Array(side * side * 4);
        for (let y = 0; y < size; y++) {
          for (let x = 0; x < size; x++) {
            const sy = y - dy;
            let sx = x - dx;
            if (sy < 0 || sy >= size || sx < 0 || sx >= size) continue;
            if (mirror) sx = size - 1 - sx;
            for (let c = 0; c < 4; c++) {
              const o = (Math.floor(y / factor) * side + Math.floor(x / factor)) * 4 + c;
              want[o] =
                want[o]! + data[(2 * size * size + sy * size + sx) * channels + c]! / (255 * factor ** 2);
            }
          }
        }
        const worst = got.reduce((d, v, i) => Math.max(d, Math.abs(v - want[i]!)), 0);
        assert.ok(worst < 1e-6, `mirror ${mirror}, shift (${dx}, ${dy}), factor ${factor}: ${worst}`);
      }
    } finally {
      await store.close();
    }
  });

  it('coarse-to-fine equals a brute-force full-resolution search when k covers every private slice', async () => {
    const store = await SliceStoreReader.open(privateFile);
    const other = await SliceStoreReader.open(otherFile);
    try {
      const { size } = store.meta;
      const geometry = { size, channels: store.meta.channels.length };
      const train = store.indicesOf('train');
      const queries = await other.readRange(0, 12);
      const trainData = await store.readIndices(train);
      const brute = (qi: number, mirrorOnly?: boolean) => {
        let best = -Infinity;
        const q = allocQueries(size * size, 1);
        q.n[0] = prepareQuery(imageOf(queries, qi, geometry), size * size, q.centred, q.mask, 0);
        const p = allocPrivates(size * size, 1);
        for (let t = 0; t < train.length; t++) {
          for (const mirror of mirrorOnly ? [true] : [false, true]) {
            preparePrivate(
              imageOf(trainData, t, geometry, { mirror }),
              size * size,
              p.values,
              p.sums,
              p.squares,
              0,
            );
            best = Math.max(best, pairScore(q, 0, p, 0));
          }
        }
        return best;
      };
      const index = await PrivateIndex.build(store, train, 16);
      const all = resolveSettings(size, { margin: 0, topK: 2 * train.length, maxShift: 0, coarseSize: 16 });
      const exhaustive = await scoreQueries(queries, 12, geometry, index, all);
      const usual = await scoreQueries(
        queries,
        12,
        geometry,
        index,
        resolveSettings(size, { margin: 0, maxShift: 0 }),
      );
      for (let i = 0; i < 12; i++) {
        assert.ok(Math.abs(exhaustive[i]!.score - brute(i)) < 1e-5, `query ${i}`);
        // The default top-k's exact score is a real pair's full-resolution score.
        assert.ok(usual[i]!.score <= exhaustive[i]!.score + 1e-6);
        const m = usual[i]!;
        const t = train.indexOf(m.privateIndex);
        const q = allocQueries(size * size, 1);
        q.n[0] = prepareQuery(imageOf(queries, i, geometry), size * size, q.centred, q.mask, 0);
        const p = allocPrivates(size * size, 1);
        preparePrivate(
          imageOf(trainData, t, geometry, { mirror: m.mirrored }),
          size * size,
          p.values,
          p.sums,
          p.squares,
          0,
        );
        assert.ok(Math.abs(pairScore(q, 0, p, 0) - m.score) < 1e-6);
      }
      // For unrelated slices (no copy) the coarse ranking may pick a near-equal neighbour: a lower bound, close.
      const gap = usual.reduce((s, m, i) => s + exhaustive[i]!.score - m.score, 0) / 12;
      assert.ok(gap < 0.02, `mean gap to the brute-force maximum ${gap}`);
    } finally {
      await store.close();
      await other.close();
    }
  });

  it('a match found at a shift scores what the re-prepared shifted query scores', async () => {
    const store = await SliceStoreReader.open(privateFile);
    const other = await SliceStoreReader.open(otherFile);
    try {
      const { size } = store.meta;
      const geometry = { size, channels: store.meta.channels.length };
      const train = store.indicesOf('train');
      const set = await plantedSet(store, 30, await other.readRange(0, 10), 11);
      const count = set.planted + set.fresh;
      const index = await PrivateIndex.build(store, train, 16);
      // A large shift range, so that some climbs push masked pixels out of the frame.
      const matches = await scoreQueries(
        set.data,
        count,
        geometry,
        index,
        resolveSettings(size, { margin: 0, maxShift: 12 }),
      );
      const trainData = await store.readIndices(train);
      let shifted = 0;
      for (let i = 0; i < count; i++) {
        const m = matches[i]!;
        if (m.dx !== 0 || m.dy !== 0) shifted++;
        const q = allocQueries(size * size, 1);
        q.n[0] = prepareQuery(
          imageOf(set.data, i, geometry, { dx: m.dx, dy: m.dy }),
          size * size,
          q.centred,
          q.mask,
          0,
        );
        const p = allocPrivates(size * size, 1);
        const t = train.indexOf(m.privateIndex);
        preparePrivate(
          imageOf(trainData, t, geometry, { mirror: m.mirrored }),
          size * size,
          p.values,
          p.sums,
          p.squares,
          0,
        );
        assert.ok(Math.abs(pairScore(q, 0, p, 0) - m.score) < 1e-5, `query ${i} at (${m.dx}, ${m.dy})`);
      }
      assert.ok(shifted >= 5, `${shifted} matches at a shift`);
    } finally {
      await store.close();
      await other.close();
    }
  });

  it('flags planted copies (noise, scale, shift, mirror, mixed) and passes fresh subjects; the worker agrees', async () => {
    const store = await SliceStoreReader.open(privateFile);
    const other = await SliceStoreReader.open(otherFile);
    const candidates = path.join(root, 'candidates.fss');
    let set;
    try {
      set = await plantedSet(store, 60, await other.readRange(0, other.count), 7);
      await writeCandidateStore(candidates, store, set.data);
    } finally {
      await store.close();
      await other.close();
    }
    const result = await runAudit({ candidates, privateStore: privateFile, margin: 0.05 });
    assert.equal(result.scores.length, set.planted + set.fresh);
    assert.equal(result.threshold, quantile(result.reference, 0.99) + 0.05);
    assert.equal(result.threshold, auditThreshold(result.reference, 0.05));
    const flagged = new Set(result.flagged);
    const missed = set.sources.flatMap((s, i) => (flagged.has(i) ? [] : [`${s.kind} ${result.scores[i]}`]));
    assert.deepEqual(missed, [], `every planted copy is flagged (threshold ${result.threshold})`);
    for (const kind of PERTURBATIONS) assert.ok(set.sources.some((s) => s.kind === kind));
    const freshFlagged = result.flagged.filter((i) => i >= set.planted).length;
    assert.ok(set.fresh >= 30);
    assert.ok(
      freshFlagged <= Math.floor(0.01 * set.fresh),
      `${freshFlagged}/${set.fresh} fresh slices flagged`,
    );
    // Most planted copies are traced to the slice they came from.
    const traced = set.sources.filter((s, i) => result.matches[i]!.privateIndex === s.privateIndex).length;
    assert.ok(traced >= 0.9 * set.planted, `${traced} traced`);

    const inWorker = await runAuditInWorker({ candidates, privateStore: privateFile, margin: 0.05 });
    assert.deepEqual(inWorker.scores, result.scores);
    assert.deepEqual(inWorker.flagged, result.flagged);
  });

  it('names the file on bad input', async () => {
    const junk = path.join(root, 'junk.fss');
    await writeFile(junk, Buffer.alloc(100, 7));
    await assert.rejects(runAudit({ candidates: junk, privateStore: privateFile, margin: 0 }), (e: Error) =>
      e.message.includes(junk),
    );
    const store = await SliceStoreReader.open(otherFile);
    const wrongSize = path.join(root, 'wrong-size.fss');
    try {
      const data = await store.readRange(0, 2);
      const small = new Uint8Array((data.length / 4) | 0);
      await writeCandidateStore(
        wrongSize,
        { meta: { ...store.meta, size: 16, sliceBytes: 16 * 16 * 5 } } as SliceStoreReader,
        small.subarray(0, 2 * 16 * 16 * 5),
      );
    } finally {
      await store.close();
    }
    await assert.rejects(
      runAuditInWorker({ candidates: wrongSize, privateStore: privateFile, margin: 0 }),
      (e: Error) => e.message.includes(wrongSize) && /16².*64²/.test(e.message),
    );
  });
});

describe('memorization audit without held-out subjects (leave-one-subject-out reference)', () => {
  let root: string;
  let privateFile: string;
  let singleFile: string;
  let otherFile: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-audit-loso-'));
    const manifest = await writePhantomSites({
      out: path.join(root, 'data'),
      sites: 3,
      cases: 8,
      siteSizes: [5, 2, 1],
      seed: 33,
      naming: '2021',
      dims: [200, 200, 100],
    });
    privateFile = path.join(root, 'private.fss');
    otherFile = path.join(root, 'other.fss');
    singleFile = path.join(root, 'single.fss');
    // testFraction 0: every subject trains, as at a small site whose seeded split drew no held-out subject.
    for (const [site, out] of [
      [0, privateFile],
      [1, otherFile],
      [2, singleFile],
    ] as const) {
      await buildSliceStore({
        dataDir: manifest.sites[site]!.dir,
        out,
        preset: 'cpu64',
        testFraction: 0,
        seed: 2,
      });
    }
  });
  after(async () => rm(root, { recursive: true, force: true }));

  it('scores each reference slice against the other subjects only', async () => {
    const store = await SliceStoreReader.open(privateFile);
    try {
      assert.equal(store.indicesOf('test').length, 0);
      const train = store.indicesOf('train');
      const subjectOf = (index: number) =>
        store.meta.subjects.findIndex((s) => index >= s.first && index < s.first + s.count);
      const plan = planReference(store, train, 24);
      assert.equal(plan.kind, 'leave-one-subject-out');
      assert.equal(plan.ids.length, 24);
      assert.deepEqual(planReference(store, train, 24).ids, plan.ids, 'the sample is seeded');
      assert.ok(plan.subjects >= 2, `${plan.subjects} subjects sampled`);
      assert.equal(planReference(store, train, 10_000).ids.length, train.length);
      const { size } = store.meta;
      const geometry = { size, channels: store.meta.channels.length };
      const settings = resolveSettings(size, { margin: 0 });
      const index = await PrivateIndex.build(store, train, settings.coarseSize);
      try {
        const data = await store.readIndices(plan.ids);
        const loso = await scoreQueries(
          data,
          plan.ids.length,
          geometry,
          index,
          settings,
          undefined,
          plan.excluded,
        );
        const all = await scoreQueries(data, plan.ids.length, geometry, index, settings);
        for (const [i, id] of plan.ids.entries()) {
          // Without the exclusion a training slice finds itself; with it, never its own subject.
          assert.ok(all[i]!.score > 0.9999, `slice ${id} matches itself: ${all[i]!.score}`);
          assert.notEqual(subjectOf(loso[i]!.privateIndex), subjectOf(id), `slice ${id}`);
          assert.ok(loso[i]!.score < 0.999, `slice ${id} against other subjects: ${loso[i]!.score}`);
        }
      } finally {
        index.dispose();
      }
    } finally {
      await store.close();
    }
  });

  it('audits with the LOSO reference: flags planted copies, passes another site, bounds the reference', async () => {
    const store = await SliceStoreReader.open(privateFile);
    const other = await SliceStoreReader.open(otherFile);
    const candidates = path.join(root, 'candidates.fss');
    let set;
    let trainSlices: number;
    try {
      trainSlices = store.indicesOf('train').length;
      set = await plantedSet(store, 60, await other.readRange(0, other.count), 8);
      await writeCandidateStore(candidates, store, set.data);
    } finally {
      await store.close();
      await other.close();
    }
    const result = await runAudit({ candidates, privateStore: privateFile, margin: 0.05 });
    assert.equal(result.referenceKind, 'leave-one-subject-out');
    assert.equal(result.referenceSubjects, 5);
    assert.equal(result.privateTestSlices, 0);
    assert.equal(result.reference.length, Math.min(trainSlices, 256));
    assert.equal(result.threshold, auditThreshold(result.reference, 0.05));
    const flagged = new Set(result.flagged);
    const missed = set.sources.flatMap((s, i) => (flagged.has(i) ? [] : [`${s.kind} ${result.scores[i]}`]));
    assert.deepEqual(missed, [], `every planted copy is flagged (threshold ${result.threshold})`);
    for (const kind of PERTURBATIONS) assert.ok(set.sources.some((s) => s.kind === kind));
    assert.ok(set.fresh >= 30);
    const freshFlagged = result.flagged.filter((i) => i >= set.planted).length;
    assert.ok(
      freshFlagged <= Math.floor(0.01 * set.fresh),
      `${freshFlagged}/${set.fresh} fresh slices flagged`,
    );

    // A smaller cap samples fewer reference slices (seeded: the worker draws the same ones).
    const capped = await runAudit({
      candidates,
      privateStore: privateFile,
      margin: 0.05,
      referenceSlices: 40,
    });
    assert.equal(capped.reference.length, 40);
    const inWorker = await runAuditInWorker({
      candidates,
      privateStore: privateFile,
      margin: 0.05,
      referenceSlices: 40,
    });
    assert.equal(inWorker.referenceKind, 'leave-one-subject-out');
    assert.deepEqual(inWorker.reference, capped.reference);
    assert.deepEqual(inWorker.flagged, capped.flagged);
  });

  it('fails clearly with a single training subject and none held out', async () => {
    const store = await SliceStoreReader.open(singleFile);
    const candidates = path.join(root, 'single-candidates.fss');
    try {
      assert.equal(store.meta.subjects.length, 1);
      await writeCandidateStore(candidates, store, await store.readRange(0, 4));
    } finally {
      await store.close();
    }
    const check = (e: unknown) =>
      isAuditReferenceError(e) &&
      e.code === 'no_unseen_reference' &&
      /single training subject/.test(e.message) &&
      !e.message.includes(root);
    await assert.rejects(runAudit({ candidates, privateStore: singleFile, margin: 0.05 }), check);
    await assert.rejects(runAuditInWorker({ candidates, privateStore: singleFile, margin: 0.05 }), check);
  });
});

describe('memorization audit reference groups BraTS 2023 timepoints by patient', () => {
  let root: string;
  let storeFile: string;
  const baseline = 'BraTS-GLI-00000-000';
  const followUp = 'BraTS-GLI-00000-001';
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-audit-patients-'));
    const manifest = await writePhantomSites({
      out: path.join(root, 'data'),
      sites: 1,
      cases: 3,
      seed: 41,
      naming: '2023',
      dims: [200, 200, 100],
    });
    const dir = manifest.sites[0]!.dir;
    assert.ok(manifest.sites[0]!.cases.includes(baseline));
    // The follow-up scan: the baseline's images again (the extreme of a patient rescanned unchanged).
    await cp(path.join(dir, baseline), path.join(dir, followUp), { recursive: true });
    for (const f of await readdir(path.join(dir, followUp)))
      await rename(path.join(dir, followUp, f), path.join(dir, followUp, f.replace(baseline, followUp)));
    storeFile = path.join(root, 'private.fss');
    await buildSliceStore({ dataDir: dir, out: storeFile, preset: 'cpu64', testFraction: 0, seed: 2 });
  });
  after(async () => rm(root, { recursive: true, force: true }));

  /** Scores the plan's slices with and without its exclusion; returns the excluded run's matches. */
  async function scorePlan(store: SliceStoreReader, plan: ReturnType<typeof planReference>) {
    const train = store.indicesOf('train');
    const settings = resolveSettings(store.meta.size, { margin: 0 });
    const index = await PrivateIndex.build(store, train, settings.coarseSize);
    try {
      const geometry = { size: store.meta.size, channels: store.meta.channels.length };
      const data = await store.readIndices(plan.ids);
      const all = await scoreQueries(data, plan.ids.length, geometry, index, settings);
      const excluded = await scoreQueries(
        data,
        plan.ids.length,
        geometry,
        index,
        settings,
        undefined,
        plan.excluded,
      );
      return { all, excluded };
    } finally {
      index.dispose();
    }
  }

  const patientOf = (store: SliceStoreReader, index: number) =>
    patientKey(store.meta.subjects.find((s) => index >= s.first && index < s.first + s.count)!.id);

  it("leave-one-subject-out never matches a slice against the same patient's other timepoint", async () => {
    const store = await SliceStoreReader.open(storeFile);
    try {
      assert.deepEqual(store.meta.subjects.map((s) => s.id).sort(), [
        baseline,
        followUp,
        'BraTS-GLI-00001-000',
        'BraTS-GLI-00002-000',
      ]);
      const train = store.indicesOf('train');
      const plan = planReference(store, train, 10_000);
      assert.equal(plan.kind, 'leave-one-subject-out');
      assert.equal(plan.subjects, 3, 'two timepoints are one patient');
      const { all, excluded } = await scorePlan(store, plan);
      let crossTimepoint = 0;
      for (const [i, id] of plan.ids.entries()) {
        assert.notEqual(patientOf(store, excluded[i]!.privateIndex), patientOf(store, id), `slice ${id}`);
        assert.ok(excluded[i]!.score < 0.999, `slice ${id} against other patients: ${excluded[i]!.score}`);
        if (patientOf(store, id) === baseline) {
          assert.ok(all[i]!.score > 0.9999);
          crossTimepoint++;
        }
      }
      assert.ok(crossTimepoint > 0, 'the reference samples the rescanned patient');
    } finally {
      await store.close();
    }
  });

  it('a held-out follow-up of a training patient (a store split case by case) skips that patient', async () => {
    // Rewrite the store with the follow-up held out and its baseline in training, as the per-case split could.
    const source = await SliceStoreReader.open(storeFile);
    const mixedFile = path.join(root, 'mixed.fss');
    try {
      const { preset, scale, size, channels, annotation, split } = source.meta;
      const writer = await SliceStoreWriter.create(mixedFile, {
        preset,
        scale,
        size,
        channels,
        dtype: 'uint8',
        layout: 'NHWC',
        annotation,
        split,
        createdAt: new Date().toISOString(),
      });
      for (const s of source.meta.subjects) {
        const { first: _first, count: _count, ...subject } = s;
        await writer.addSubject(
          { ...subject, split: s.id === followUp ? 'test' : 'train' },
          await source.readRange(s.first, s.count),
        );
      }
      await writer.close();
    } finally {
      await source.close();
    }
    const store = await SliceStoreReader.open(mixedFile);
    try {
      const plan = planReference(store, store.indicesOf('train'), 256);
      assert.equal(plan.kind, 'held-out');
      assert.equal(plan.ids.length, store.indicesOf('test').length);
      const { all, excluded } = await scorePlan(store, plan);
      for (const [i, id] of plan.ids.entries()) {
        assert.ok(all[i]!.score > 0.9999, 'unexcluded, the follow-up finds its baseline');
        assert.notEqual(patientOf(store, excluded[i]!.privateIndex), baseline, `slice ${id}`);
        assert.ok(excluded[i]!.score < 0.999, `slice ${id}: ${excluded[i]!.score}`);
      }
    } finally {
      await store.close();
    }
  });
});
