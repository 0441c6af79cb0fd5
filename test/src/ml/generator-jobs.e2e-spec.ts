// train-gen and sample as a user runs them, for all five generators at their tiny profiles: training through
// the worker runtime writes a generator, and sampling is deterministic for a seed with valid annotations.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fedsynth } from '../support/cli.js';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { buildSliceStore, SliceStoreReader } from '@fedsynth/common/slices/index';

const TINY_SIZE: Record<string, 16 | 32> = {
  progan: 32,
  stylegan1: 32,
  stylegan2: 16,
  stylegan3: 16,
  ddpm: 16,
};

describe('train-gen and sample', () => {
  let tmp: string;
  const stores: Record<number, string> = {};
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-gen-'));
    const site = (
      await writePhantomSites({ out: path.join(tmp, 'data'), sites: 1, cases: 3, seed: 4, naming: '2023' })
    ).sites[0]!.dir;
    for (const [size, preset] of [
      [16, 'cpu16'],
      [32, 'cpu32'],
    ] as const) {
      stores[size] = path.join(tmp, `${preset}.fss`);
      await buildSliceStore({ dataDir: site, out: stores[size]!, preset, testFraction: 0 });
    }
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  for (const model of ['progan', 'stylegan1', 'stylegan2', 'stylegan3', 'ddpm']) {
    it(`${model}: trains through the runtime and samples valid, seed-deterministic slices`, async () => {
      const out = path.join(tmp, model);
      const trained = await fedsynth(
        'train-gen',
        '--model',
        model,
        '--profile',
        'tiny',
        '--data',
        stores[TINY_SIZE[model]!]!,
        '--out',
        out,
        '--steps',
        '3',
        '--batch',
        '4',
        '--workers',
        '2',
        '--checkpoint-every',
        '0',
        '--json',
      );
      assert.equal(trained.code, 0, trained.stderr);
      const card = JSON.parse(trained.stdout);
      assert.equal(card.architecture.name, model);
      assert.equal(card.steps, 3);
      assert.ok(
        card.losses.every((l: number) => Number.isFinite(l)),
        `finite losses ${card.losses}`,
      );

      // `sample` as a user runs it: 4 slices, DDIM 5 for the diffusion model; returns the store's bytes and --json
      const sample = async (file: string, seed: string, ...extra: string[]) => {
        const run = await fedsynth(
          'sample',
          '--model',
          out,
          '--n',
          '4',
          '--out',
          file,
          '--seed',
          seed,
          '--ddim-steps',
          '5',
          ...extra,
          '--json',
        );
        assert.equal(run.code, 0, run.stderr);
        return { bytes: await readFile(file), summary: JSON.parse(run.stdout) };
      };
      const draw = async (file: string, seed: string) => (await sample(file, seed)).bytes;
      const compared = (
        await sample(path.join(tmp, `${model}-q.fss`), '3', '--compare-to', stores[TINY_SIZE[model]!]!)
      ).summary;
      const quality = compared.quality;
      for (const channel of ['t1', 't2', 'flair', 't1ce']) {
        const c = quality.report.channels[channel].intersection;
        assert.ok(c >= 0 && c <= 1, `${channel} intersection ${c}`);
      }
      assert.equal(typeof quality.verdict.ok, 'boolean');
      assert.ok(quality.verdict.ok || quality.verdict.reasons.length > 0, 'a failing verdict says why');
      const a = await draw(path.join(tmp, `${model}-a.fss`), '3');
      const b = await draw(path.join(tmp, `${model}-b.fss`), '3');
      const c = await draw(path.join(tmp, `${model}-c.fss`), '4');
      const store = await SliceStoreReader.open(path.join(tmp, `${model}-a.fss`));
      const samples = await store.readRange(0, store.count);
      await store.close();
      assert.equal(store.count, 4);
      assert.equal(store.meta.size, TINY_SIZE[model]);
      const other = await SliceStoreReader.open(path.join(tmp, `${model}-b.fss`));
      assert.deepEqual(await other.readRange(0, 4), samples, 'same seed, same slices');
      await other.close();
      assert.ok(a.length === b.length && c.length === a.length);
      const third = await SliceStoreReader.open(path.join(tmp, `${model}-c.fss`));
      assert.notDeepEqual(await third.readRange(0, 4), samples, 'another seed, other slices');
      await third.close();
      for (let i = 4; i < samples.length; i += 5) {
        assert.ok([0, 51, 102, 204].includes(samples[i]!), `annotation byte ${samples[i]}`);
      }
      // One brain mask for all sequences: a pixel black in any sequence is black in every channel; --raw keeps the
      // generator's output, which differs from the default only at pixels the mask blacked out.
      const raw = await sample(path.join(tmp, `${model}-raw.fss`), '3', '--raw');
      assert.equal(raw.summary.maskedPixels, 0);
      const rawStore = await SliceStoreReader.open(path.join(tmp, `${model}-raw.fss`));
      const rawSamples = await rawStore.readRange(0, 4);
      await rawStore.close();
      let masked = 0;
      for (let p = 0; p < samples.length; p += 5) {
        const pixel = [...samples.subarray(p, p + 5)];
        if (Math.min(...pixel.slice(0, 4)) === 0) {
          assert.deepEqual(pixel, [0, 0, 0, 0, 0], `pixel ${p / 5} is black in one sequence only`);
        }
        if (pixel.some((b, c) => b !== rawSamples[p + c])) {
          assert.deepEqual(pixel, [0, 0, 0, 0, 0], `pixel ${p / 5} changed but not to background`);
          masked++;
        }
      }
      assert.equal(masked, compared.maskedPixels, 'maskedPixels counts the changed pixels');
    });
  }

  it('refuses an unknown generator by name', async () => {
    const run = await fedsynth(
      'train-gen',
      '--model',
      'vae',
      '--data',
      stores[16]!,
      '--out',
      path.join(tmp, 'x'),
    );
    assert.equal(run.code, 2);
    assert.match(
      run.stderr,
      /--model must be one of progan, stylegan1, stylegan2, stylegan3, ddpm, got "vae"/,
    );
  });
});
