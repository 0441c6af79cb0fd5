// Test material only (not exported from the audit index, so the agent and the audit worker do not load the phantom
// generator): two phantom sites cut into slice stores, the material every audit spec plants copies into.
import path from 'node:path';
import { writePhantomSites } from '../phantom/index.js';
import { buildSliceStore } from '../slices/slice-pipeline.js';

export interface AuditFixtureStores {
  /** the auditing site's private store: training subjects and held-out test subjects (testFraction 0.3) */
  privateFile: string;
  /** another site's slices, all of them fresh for the auditing site */
  otherFile: string;
}

/**
 * Two phantom sites cut into slice stores under `root`: the auditing site's private store and another site's, the
 * material every audit spec plants copies into and draws fresh slices from.
 */
export async function writeAuditFixtureStores(
  root: string,
  options: {
    cases: number;
    siteSizes: [number, number];
    seed: number;
    naming: '2021' | '2023';
    preset: 'cpu32' | 'cpu64';
    splitSeed: number;
  },
): Promise<AuditFixtureStores> {
  const manifest = await writePhantomSites({
    out: path.join(root, 'data'),
    sites: 2,
    cases: options.cases,
    siteSizes: options.siteSizes,
    seed: options.seed,
    naming: options.naming,
    dims: [200, 200, 100],
  });
  const privateFile = path.join(root, 'private.fss');
  const otherFile = path.join(root, 'other.fss');
  const common = { preset: options.preset, seed: options.splitSeed } as const;
  await buildSliceStore({ dataDir: manifest.sites[0]!.dir, out: privateFile, testFraction: 0.3, ...common });
  await buildSliceStore({ dataDir: manifest.sites[1]!.dir, out: otherFile, testFraction: 0, ...common });
  return { privateFile, otherFile };
}
