// The site's private slices for a model's input size: a slice store the site keeps in its data folder (`*.fss`
// of that size), else the data folder's BraTS cases sliced once with the matching preset into a cache under the
// state dir (`slices/<preset>.fss`), reused by later jobs and rebuilt when missing or when the set of cases
// changed. The subject split uses a fixed seed, so a subject is in the same split in every job (a model is never
// evaluated on subjects it trained on). These stores never leave the site.
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { JobError } from './job-handlers.js';
import type { AgentLogger } from './logger.js';
import { writeJsonFile } from './site-state.js';

/** What the coordinator learns when the private slices cannot be had: a fixed text (the detail is logged here). */
export const PRIVATE_DATA_FAILURE = 'the site could not read its private slices (details in the site log)';

/** A failure of the site's private data as a job failure: code 'private_data', fixed text, detail logged locally. */
export function privateDataError(log: AgentLogger, error: unknown): JobError {
  if (error instanceof JobError && error.code === 'private_data') return error;
  log.error(`private slices: ${(error as Error)?.message ?? String(error)}`);
  return new JobError('private_data', PRIVATE_DATA_FAILURE, false);
}

/** Seed and held-out share of the cached stores' subject split (fixed: the split must never move). */
export const PRIVATE_SPLIT = { seed: 0, testFraction: 0.15 } as const;

export interface PrivateSliceProgress {
  done: number;
  total: number;
}

export interface PrivateSlicesOptions {
  onProgress?: (progress: PrivateSliceProgress) => void;
}

interface CacheStamp {
  fingerprint: string;
  preset: string;
  slices: number;
  createdAt: string;
}

export class PrivateSliceStores {
  private readonly building = new Map<string, Promise<string>>();

  constructor(
    readonly dataDir: string,
    /** where sliced stores are cached (the agent uses <state>/slices) */
    readonly cacheDir: string,
    private readonly log: AgentLogger,
  ) {}

  /**
   * The path of a slice store of `size`² slices of the site's private data. Fails with a JobError 'private_data'
   * whose text names no path or case (the detail goes to the site's log).
   */
  async forSize(size: number, options: PrivateSlicesOptions = {}): Promise<string> {
    try {
      return await this.locate(size, options);
    } catch (error) {
      throw privateDataError(this.log, error);
    }
  }

  private async locate(size: number, options: PrivateSlicesOptions): Promise<string> {
    const own = await this.storeInDataDir(size);
    if (own) return own;
    const { presetForInputSize } = await import('@fedsynth/common/ml/jobs/job-files');
    const preset = presetForInputSize(size);
    // One build per preset at a time: concurrent jobs share it (and a job aborted mid-slicing leaves it going,
    // since the next job needs the same store).
    let pending = this.building.get(preset);
    if (!pending) {
      pending = this.cached(preset, options).finally(() => this.building.delete(preset));
      this.building.set(preset, pending);
    }
    return pending;
  }

  /** A `*.fss` in the data folder whose slices are `size`² (the first by name). */
  private async storeInDataDir(size: number): Promise<string | undefined> {
    const names = await readdir(this.dataDir).catch(() => undefined);
    if (!names) throw new Error(`the site's data folder ${this.dataDir} does not exist`);
    const { SliceStoreReader } = await import('@fedsynth/common/slices/index');
    for (const name of names.filter((n) => n.endsWith('.fss')).sort()) {
      const file = path.join(this.dataDir, name);
      const reader = await SliceStoreReader.open(file).catch((error: unknown) => {
        this.log.warn(`ignoring ${file}: ${(error as Error).message}`);
        return undefined;
      });
      if (!reader) continue;
      const matches = reader.meta.size === size;
      await reader.close();
      if (matches) return file;
    }
    return undefined;
  }

  private async cached(preset: string, options: PrivateSlicesOptions): Promise<string> {
    const { discoverCases } = await import('@fedsynth/common/brats/index');
    const discovery = await discoverCases(this.dataDir);
    if (discovery.cases.length === 0) {
      throw new Error(`the site's data folder ${this.dataDir} has no slice store and no BraTS cases`);
    }
    const fingerprint = createHash('sha256')
      .update(
        JSON.stringify({
          preset,
          split: PRIVATE_SPLIT,
          cases: discovery.cases.map((c) => c.id).sort(),
        }),
      )
      .digest('hex');
    const file = path.join(this.cacheDir, `${preset}.fss`);
    const stampFile = path.join(this.cacheDir, `${preset}.json`);
    const stamp = await readFile(stampFile, 'utf8')
      .then((text) => JSON.parse(text) as CacheStamp)
      .catch(() => undefined);
    const present = await stat(file).then(
      (s) => s.isFile(),
      () => false,
    );
    if (present && stamp?.fingerprint === fingerprint) return file;

    await mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
    await rm(stampFile, { force: true });
    this.log.info(
      `slicing the site's ${discovery.cases.length} case(s) with the ${preset} preset into ${file}` +
        (present ? ' (the cases changed since the cached store)' : ''),
    );
    const { buildSliceStore } = await import('@fedsynth/common/slices/index');
    const summary = await buildSliceStore({
      dataDir: this.dataDir,
      out: file,
      preset: preset as Parameters<typeof buildSliceStore>[0]['preset'],
      seed: PRIVATE_SPLIT.seed,
      testFraction: PRIVATE_SPLIT.testFraction,
      onProgress: (p) => options.onProgress?.({ done: p.done, total: p.total }),
    });
    for (const s of summary.skipped) this.log.warn(`slicing: skipped ${s.caseId}: ${s.reason}`);
    this.log.info(
      `sliced ${summary.casesSliced} case(s): ${summary.slices} slices ` +
        `(${summary.trainSubjects} train / ${summary.testSubjects} test subjects) in ${summary.elapsedMs} ms`,
    );
    await writeJsonFile(stampFile, {
      fingerprint,
      preset,
      slices: summary.slices,
      createdAt: new Date().toISOString(),
    } satisfies CacheStamp);
    return file;
  }
}
