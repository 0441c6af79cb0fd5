// What a site says about itself in its hello: the ML backend this machine gets, cores, memory, the job kinds it
// runs, and COUNTS of its data set (never case ids, paths or anything per case).
import { readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { SiteHello } from '@fedsynth/common/protocol/index';
import type { AgentLogger } from './logger.js';

export type HelloCapabilities = Omit<SiteHello['capabilities'], 'jobKinds'>;
export type DatasetSummary = SiteHello['dataset'];

export interface SiteDescription {
  capabilities: HelloCapabilities;
  dataset: DatasetSummary;
}

const BACKEND_NAMES: Record<string, HelloCapabilities['backends'][number]> = {
  'tensorflow-gpu': 'tfjs-node-gpu',
  tensorflow: 'tfjs-node',
  wasm: 'wasm',
  cpu: 'cpu',
};

/** The tfjs backend selectBackend picks here (node-gpu → node → wasm → cpu), as protocol backend names. */
export async function probeBackends(log: AgentLogger): Promise<HelloCapabilities['backends']> {
  try {
    const { selectBackend } = await import('@fedsynth/common/ml/backend/index');
    const choice = await selectBackend({ logger: (line) => log.info(line) });
    const name = BACKEND_NAMES[choice.candidate];
    return name ? [name] : [];
  } catch (error) {
    log.warn(`could not select an ML backend: ${(error as Error).message}`);
    return [];
  }
}

export function machineCapabilities(backends: HelloCapabilities['backends']): HelloCapabilities {
  return {
    backends,
    cores: Math.max(1, Math.min(4096, os.availableParallelism())),
    memoryMb: Math.round(os.totalmem() / 2 ** 20),
  };
}

const EMPTY: DatasetSummary = {
  cases: 0,
  trainCases: 0,
  testCases: 0,
  slices: 0,
  trainSlices: 0,
  testSlices: 0,
};

/**
 * Counts of the site's data: from slice stores (`*.fss`, their metadata only) when the data folder has them,
 * else the number of BraTS cases discovery finds there. Cheap: no image is decoded.
 */
export async function summarizeDataset(dataDir: string, log: AgentLogger): Promise<DatasetSummary> {
  try {
    const names = await readdir(dataDir).catch(() => undefined);
    if (!names) {
      log.warn(`data folder ${dataDir} does not exist: reporting an empty data set`);
      return { ...EMPTY };
    }
    const stores = names.filter((n) => n.endsWith('.fss')).sort();
    if (stores.length) {
      // Stores of different slice sizes (e.g. a 32² and a 64² cut) hold the same cases: count one size, the one
      // with the most slices, instead of adding them up.
      const { SliceStoreReader } = await import('@fedsynth/common/slices/index');
      const bySize = new Map<number, { sum: DatasetSummary; preset?: string }>();
      for (const name of stores) {
        const reader = await SliceStoreReader.open(path.join(dataDir, name));
        try {
          const entry = bySize.get(reader.meta.size) ?? { sum: { ...EMPTY } };
          bySize.set(reader.meta.size, entry);
          entry.preset ??= reader.meta.preset;
          const sum = entry.sum;
          for (const s of reader.meta.subjects) {
            sum.cases++;
            sum.slices += s.count;
            if (s.split === 'test') {
              sum.testCases++;
              sum.testSlices += s.count;
            } else {
              sum.trainCases++;
              sum.trainSlices += s.count;
            }
          }
        } finally {
          await reader.close();
        }
      }
      const { sum, preset } = [...bySize.values()].reduce((a, b) => (b.sum.slices > a.sum.slices ? b : a));
      return { ...sum, ...(preset ? { preset: String(preset).slice(0, 32) } : {}) };
    }
    const { discoverCases } = await import('@fedsynth/common/brats/index');
    const found = await discoverCases(dataDir);
    return { ...EMPTY, cases: found.cases.length };
  } catch (error) {
    log.warn(`could not summarize the data in ${dataDir}: ${(error as Error).message}`);
    return { ...EMPTY };
  }
}

export async function describeSite(dataDir: string, log: AgentLogger): Promise<SiteDescription> {
  const [backends, dataset] = await Promise.all([probeBackends(log), summarizeDataset(dataDir, log)]);
  return { capabilities: machineCapabilities(backends), dataset };
}
