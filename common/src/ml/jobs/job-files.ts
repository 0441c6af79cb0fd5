// Small pieces the train/sample/evaluate jobs share: atomic file writes, the slice store a model reads (sliced from
// a data folder with the model's preset when needed) and what a store offers for training.
import { rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildSliceStore } from '../../slices/slice-pipeline.js';
import type { SlicePresetName } from '../../slices/presets.js';
import type { ModelArchitecture } from '../model.js';
import { SliceStoreReader } from '../../slices/slice-store.js';

/** Temp name + rename: a reader never sees half a file, a crash never leaves one. */
export async function writeAtomic(file: string, bytes: Buffer): Promise<void> {
  await writeFile(`${file}.partial`, bytes);
  await rename(`${file}.partial`, file);
}

/** The labelled training subjects and slices of a store (what a model card records it was trained on). */
export async function trainingSetOf(
  store: string,
): Promise<{ store: string; trainSubjects: number; trainSlices: number }> {
  const reader = await SliceStoreReader.open(store);
  try {
    return {
      store,
      trainSlices: reader.indicesOf('train', { labelledOnly: true }).length,
      trainSubjects: reader.meta.subjects.filter((s) => s.split === 'train' && s.labelled).length,
    };
  } finally {
    await reader.close();
  }
}

/** The slice preset whose size a profile's input size needs. */
export function presetForInputSize(size: number): SlicePresetName {
  if (size === 256) return 'paper';
  if (size === 64) return 'cpu64';
  if (size === 32) return 'cpu32';
  if (size === 16) return 'cpu16';
  throw new Error(`no slice preset makes ${size}² slices (paper 256, cpu64 64, cpu32 32, cpu16 16)`);
}

/** The square slice side a model reads: segmenters say inputSize, GANs resolution, the diffusion model imageSize. */
export function modelInputSize(architecture: ModelArchitecture): number {
  const { inputSize, resolution, imageSize } = architecture.config;
  const size = inputSize ?? resolution ?? imageSize;
  if (typeof size !== 'number') throw new Error(`${architecture.name}: architecture has no input size`);
  return size;
}

export async function isDirectory(file: string): Promise<boolean> {
  const info = await stat(file).catch(() => {
    throw new Error(`${file}: no such slice store or data folder`);
  });
  return info.isDirectory();
}

/**
 * A slice store for `data`: the store itself, or a folder of BraTS cases sliced with the preset that matches
 * the model (cached at `cacheFile`).
 */
export async function resolveSliceStore(
  data: string,
  inputSize: number,
  cacheFile: string,
  options: { seed?: number; testFraction?: number; log?: (line: string) => void } = {},
): Promise<string> {
  if (!(await isDirectory(data))) return path.resolve(data);
  const preset = presetForInputSize(inputSize);
  options.log?.(`slicing ${data} with the ${preset} preset -> ${cacheFile}`);
  const summary = await buildSliceStore({
    dataDir: data,
    out: cacheFile,
    preset,
    seed: options.seed ?? 0,
    testFraction: options.testFraction,
  });
  for (const s of summary.skipped)
    options.log?.(`skipped ${s.caseId}${s.file ? ` (${s.file})` : ''}: ${s.reason}`);
  return path.resolve(cacheFile);
}
