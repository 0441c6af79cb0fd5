// Locations the test suites share: the repository root and the read-only real test data beside it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, found from this compiled file (common/dist/testing/paths.js). */
export function repoRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

/**
 * The real test files (NIfTI reader suites, one BraTS 2023 case), kept outside the repository at
 * `../shared/data` or wherever FEDSYNTH_SHARED_DATA points. Missing data is an error, never a skip.
 */
export function sharedDataDir(): string {
  const dir = process.env.FEDSYNTH_SHARED_DATA ?? path.resolve(repoRoot(), '..', 'shared', 'data');
  if (!existsSync(dir)) {
    throw new Error(
      `shared test data not found at ${dir}; set FEDSYNTH_SHARED_DATA to the shared/data folder`,
    );
  }
  return dir;
}

export function sharedDataFile(...parts: string[]): string {
  return path.join(sharedDataDir(), ...parts);
}
