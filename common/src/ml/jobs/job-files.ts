// Small pieces the train/sample jobs share: atomic file writes and what a slice store offers for training.
import { rename, writeFile } from 'node:fs/promises';
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
