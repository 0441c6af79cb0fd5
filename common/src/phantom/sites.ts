// Writes phantom cases as BraTS folders split over federated sites, plus a phantom.json that marks the data
// synthetic. Case ids are global (unique across sites) and a case's content depends on the seed and its global
// index only, so changing the split moves cases between sites without changing them.

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { writeNifti, type NiftiWriteSpec } from '../nifti/index.js';
import { createRng } from '../util/rng.js';
import {
  DEFAULT_PHANTOM_DIMS,
  generatePhantomCase,
  validateNaming,
  validatePhantomDims,
  type BratsNaming,
  type PhantomCaseVolumes,
} from './generate.js';

/** Bumped whenever the same seed would produce different data. */
export const PHANTOM_GENERATOR_VERSION = 1;

export interface PhantomSitesOptions {
  out: string;
  sites: number;
  /** Total over all sites. */
  cases: number;
  /** Explicit per-site counts, each at least 1, summing to `cases`; default: a seeded unequal split. */
  siteSizes?: number[];
  seed: number;
  naming: BratsNaming;
  dims?: [number, number, number];
  /** Default 1: phantom data compresses well even at the fastest level. */
  gzipLevel?: number;
  onProgress?: (e: { done: number; total: number; caseId: string; site: string }) => void;
}

export interface PhantomManifest {
  seed: number;
  naming: BratsNaming;
  dims: number[];
  /** `dir` is absolute in what writePhantomSites returns, relative to the output folder in phantom.json. */
  sites: { name: string; dir: string; cases: string[] }[];
}

/** Contents of OUT/phantom.json. */
export interface PhantomManifestFile extends PhantomManifest {
  synthetic: true;
  generator: 'fedsynth-phantom';
  generatorVersion: number;
}

export const PHANTOM_MANIFEST_FILE = 'phantom.json';

/** The seed of the case at a global, zero-based index: independent of which site the case lands in. */
export function phantomCaseSeed(seed: number, index: number): string {
  return `phantom:${seed}:case:${index}`;
}

/** BraTS case id for a global, zero-based case index. */
export function phantomCaseId(naming: BratsNaming, index: number): string {
  switch (naming) {
    case '2023':
      return `BraTS-GLI-${String(index).padStart(5, '0')}-000`;
    case '2021':
      return `BraTS2021_${String(index).padStart(5, '0')}`;
    case '2020':
      return `BraTS20_Training_${String(index + 1).padStart(3, '0')}`;
  }
}

/** File suffixes of t1, t1ce, t2, flair and seg in a naming. */
export function bratsFileSuffixes(
  naming: BratsNaming,
): Record<'t1' | 't1ce' | 't2' | 'flair' | 'seg', string> {
  return naming === '2023'
    ? { t1: '-t1n', t1ce: '-t1c', t2: '-t2w', flair: '-t2f', seg: '-seg' }
    : { t1: '_t1', t1ce: '_t1ce', t2: '_t2', flair: '_flair', seg: '_seg' };
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`phantom ${name} must be an integer >= ${min}, got ${value}`);
  }
}

/**
 * Cases per site. Explicit sizes are checked; otherwise proportions come from a seeded flat Dirichlet (normalised
 * exponential draws), every site gets at least one case, the rest go by largest remainder, and sites are sorted
 * largest first, like the unequal institutional partitions of federated BraTS.
 */
export function phantomSiteSizes(options: {
  sites: number;
  cases: number;
  seed: number;
  siteSizes?: number[];
}): number[] {
  const { sites, cases, siteSizes } = options;
  checkCount('sites', sites, 1);
  checkCount('cases', cases, 1);
  if (cases < sites) {
    throw new RangeError(`phantom needs at least one case per site: ${cases} cases for ${sites} sites`);
  }
  if (siteSizes) {
    if (siteSizes.length !== sites) {
      throw new RangeError(`siteSizes has ${siteSizes.length} entries for ${sites} sites`);
    }
    siteSizes.forEach((size, i) => checkCount(`siteSizes[${i}]`, size, 1));
    const total = siteSizes.reduce((sum, size) => sum + size, 0);
    if (total !== cases) {
      throw new RangeError(`siteSizes [${siteSizes.join(', ')}] sum to ${total}, not to cases = ${cases}`);
    }
    return [...siteSizes];
  }

  const rng = createRng(options.seed).fork('site-sizes');
  const weights = Array.from({ length: sites }, () => -Math.log(1 - rng.next()));
  const weightSum = weights.reduce((sum, w) => sum + w, 0);
  const spare = cases - sites;
  const shares = weights.map((w) => (w / weightSum) * spare);
  const sizes = shares.map((share) => 1 + Math.floor(share));
  const byRemainder = shares.map((share, i) => ({ i, remainder: share - Math.floor(share) }));
  byRemainder.sort((a, b) => b.remainder - a.remainder || a.i - b.i);
  let missing = cases - sizes.reduce((sum, size) => sum + size, 0);
  for (const { i } of byRemainder) {
    if (missing-- <= 0) break;
    sizes[i]++;
  }
  sizes.sort((a, b) => b - a);
  // Keep the partition unequal when it can be, even if the draw happened to split evenly.
  if (sites > 1 && sizes[0] === sizes[sites - 1] && sizes[0] > 1) {
    sizes[0]++;
    sizes[sites - 1]--;
  }
  return sizes;
}

/** BraTS-like voxel -> world matrix: LPS-style axis flips with the origin at the far corner of y. */
function bratsAffine(dims: readonly number[]): number[][] {
  return [
    [-1, 0, 0, 0],
    [0, -1, 0, dims[1] - 1],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
  ];
}

async function writeCase(
  volumes: PhantomCaseVolumes,
  caseDir: string,
  naming: BratsNaming,
  gzipLevel: number,
): Promise<void> {
  await mkdir(caseDir, { recursive: true });
  const suffixes = bratsFileSuffixes(naming);
  const common = { dims: volumes.dims, pixdim: [1, 1, 1], affine: bratsAffine(volumes.dims) };
  const specs: [string, NiftiWriteSpec][] = [
    ...(['t1', 't1ce', 't2', 'flair'] as const).map((sequence): [string, NiftiWriteSpec] => [
      suffixes[sequence],
      { ...common, datatype: 'int16', data: volumes[sequence], description: `fedsynth phantom ${sequence}` },
    ]),
    [suffixes.seg, { ...common, datatype: 'uint8', data: volumes.seg, description: 'fedsynth phantom seg' }],
  ];
  // Concurrent writes: gzip runs on libuv's thread pool, so the five files compress in parallel.
  await Promise.all(
    specs.map(([suffix, spec]) =>
      writeNifti(path.join(caseDir, `${volumes.id}${suffix}.nii.gz`), spec, { gzipLevel }),
    ),
  );
}

/**
 * Generates `cases` phantom cases over `sites` site folders under `out`, writing BraTS-named .nii.gz files and
 * OUT/phantom.json, and returns the manifest. While one case's files compress on the thread pool, the next
 * case is generated, so at most two cases are in memory.
 */
export async function writePhantomSites(options: PhantomSitesOptions): Promise<PhantomManifest> {
  const naming = validateNaming(options.naming);
  const dims = validatePhantomDims(options.dims ?? DEFAULT_PHANTOM_DIMS);
  if (!Number.isSafeInteger(options.seed)) {
    throw new RangeError(`phantom seed must be an integer, got ${options.seed}`);
  }
  const gzipLevel = options.gzipLevel ?? 1;
  if (!Number.isInteger(gzipLevel) || gzipLevel < 0 || gzipLevel > 9) {
    throw new RangeError(`gzipLevel must be an integer from 0 to 9, got ${gzipLevel}`);
  }
  const sizes = phantomSiteSizes(options);

  const manifest: PhantomManifest = { seed: options.seed, naming, dims: [...dims], sites: [] };
  let nextIndex = 0;
  for (let s = 0; s < sizes.length; s++) {
    const name = `site-${s + 1}`;
    const cases = Array.from({ length: sizes[s] }, () => phantomCaseId(naming, nextIndex++));
    manifest.sites.push({ name, dir: name, cases });
  }

  await mkdir(options.out, { recursive: true });
  const total = options.cases;
  let done = 0;
  let pending: Promise<void> = Promise.resolve();
  let index = 0;
  for (const site of manifest.sites) {
    for (const caseId of site.cases) {
      const volumes = generatePhantomCase({
        seed: phantomCaseSeed(options.seed, index),
        id: caseId,
        naming,
        dims,
      });
      index++;
      await pending;
      pending = writeCase(volumes, path.join(options.out, site.dir, caseId), naming, gzipLevel).then(() => {
        done++;
        options.onProgress?.({ done, total, caseId, site: site.name });
      });
    }
  }
  await pending;

  const file: PhantomManifestFile = {
    synthetic: true,
    generator: 'fedsynth-phantom',
    generatorVersion: PHANTOM_GENERATOR_VERSION,
    ...manifest,
  };
  await writeFile(path.join(options.out, PHANTOM_MANIFEST_FILE), `${JSON.stringify(file, null, 2)}\n`);
  return { ...manifest, sites: manifest.sites.map((s) => ({ ...s, dir: path.resolve(options.out, s.dir) })) };
}
