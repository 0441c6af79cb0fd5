// Folder of BraTS cases -> slice store: discover, split by subject, load and check each case, slice, write.
// One broken case never stops the rest: it is reported in the summary and skipped.
import path from 'node:path';
import { discoverCases, type ModalityMap } from '../brats/case-discovery.js';
import { CaseError } from '../brats/case-error.js';
import { loadCase, type LoadedCase } from '../brats/case-loader.js';
import type { LabelScheme } from '../brats/label-schemes.js';
import {
  SLICE_CHANNELS,
  SLICE_PRESETS,
  ANNOTATION_OF_CANONICAL,
  type IntensityScale,
  type SlicePresetName,
} from './presets.js';
import { sliceCase } from './slicer.js';
import { SliceStoreWriter, type SliceStoreMeta } from './slice-store.js';
import { splitSubjects } from './subject-split.js';

export interface SlicePipelineOptions {
  dataDir: string;
  out: string;
  preset: SlicePresetName;
  scale?: IntensityScale;
  map?: ModalityMap;
  labels?: LabelScheme;
  allowUnlabelled?: boolean;
  testFraction?: number;
  seed?: number;
  onProgress?: (event: SliceProgress) => void;
}

export interface SliceProgress {
  done: number;
  total: number;
  caseId: string;
  slices: number;
  elapsedMs: number;
}

export interface SkippedCase {
  caseId: string;
  file?: string;
  reason: string;
}

export interface SlicePipelineSummary {
  out: string;
  preset: SlicePresetName;
  scale: IntensityScale;
  casesFound: number;
  casesSliced: number;
  slices: number;
  trainSubjects: number;
  testSubjects: number;
  skipped: SkippedCase[];
  /** bytes of NIfTI read (compressed size on disk is not tracked here; this is the decoded voxel volume) */
  voxelBytes: number;
  elapsedMs: number;
  meta: SliceStoreMeta;
}

function describeFailure(caseId: string, error: unknown): SkippedCase {
  if (error instanceof CaseError) return { caseId, file: error.file, reason: error.reason };
  return { caseId, reason: (error as Error).message ?? String(error) };
}

export async function buildSliceStore(options: SlicePipelineOptions): Promise<SlicePipelineSummary> {
  const started = Date.now();
  const preset = SLICE_PRESETS[options.preset];
  const scale = options.scale ?? 'max';
  const seed = options.seed ?? 0;
  const testFraction = options.testFraction ?? 0.15;
  const discovery = await discoverCases(options.dataDir, options.map);
  const skipped: SkippedCase[] = discovery.problems.map((p) => ({
    caseId: p.caseId,
    file: p.dir,
    reason: p.reason,
  }));
  const split = splitSubjects(
    discovery.cases.map((c) => c.id),
    testFraction,
    seed,
  );
  const writer = await SliceStoreWriter.create(options.out, {
    preset: preset.name,
    scale,
    size: preset.size,
    channels: [...SLICE_CHANNELS],
    dtype: 'uint8',
    layout: 'NHWC',
    annotation: {
      NCR: ANNOTATION_OF_CANONICAL[1]!,
      ED: ANNOTATION_OF_CANONICAL[2]!,
      ET: ANNOTATION_OF_CANONICAL[3]!,
    },
    split: { seed, testFraction },
    createdAt: new Date().toISOString(),
  });

  const total = discovery.cases.length;
  let sliced = 0;
  let slices = 0;
  let voxelBytes = 0;
  const load = (i: number): Promise<LoadedCase> =>
    loadCase(discovery.cases[i]!, { labels: options.labels, allowUnlabelled: options.allowUnlabelled });
  try {
    // Decode the next case (zlib on the threadpool) while this one is sliced on the main thread.
    let next: Promise<LoadedCase> | undefined = total > 0 ? load(0) : undefined;
    next?.catch(() => undefined);
    for (let i = 0; i < total; i++) {
      const files = discovery.cases[i]!;
      const current = next!;
      next = i + 1 < total ? load(i + 1) : undefined;
      next?.catch(() => undefined);
      let caseSlices = 0;
      // Only a case's own problems (decoding, checks) skip it; a failing write (disk full) stops the run.
      let prepared: { loaded: LoadedCase; result: ReturnType<typeof sliceCase> } | undefined;
      try {
        const loaded = await current;
        prepared = { loaded, result: sliceCase(loaded, preset, scale) };
      } catch (error) {
        skipped.push(describeFailure(files.id, error));
      }
      if (prepared) {
        const { loaded, result } = prepared;
        await writer.addSubject(
          {
            id: loaded.id,
            split: split.get(loaded.id)!,
            labelled: loaded.labels !== undefined,
            z: result.z,
            sourceDims: loaded.dims,
            reference: result.reference,
          },
          result.data,
        );
        for (const m of Object.values(loaded.images)) voxelBytes += m.data.byteLength;
        sliced++;
        caseSlices = result.z.length;
        slices += caseSlices;
      }
      options.onProgress?.({
        done: i + 1,
        total,
        caseId: files.id,
        slices: caseSlices,
        elapsedMs: Date.now() - started,
      });
    }
    return summarize(await writer.close());
  } catch (error) {
    await writer.abort();
    throw error;
  }

  function summarize(meta: SliceStoreMeta): SlicePipelineSummary {
    const subjects = meta.subjects;
    return {
      out: path.resolve(options.out),
      preset: preset.name,
      scale,
      casesFound: total + discovery.problems.length,
      casesSliced: sliced,
      slices,
      trainSubjects: subjects.filter((s) => s.split === 'train').length,
      testSubjects: subjects.filter((s) => s.split === 'test').length,
      skipped,
      voxelBytes,
      elapsedMs: Date.now() - started,
      meta,
    };
  }
}
