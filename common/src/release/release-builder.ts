// Builds a release folder from candidate slice stores: the candidates not withheld become samples, written as
// per-sample NIfTI in BraTS 2023 naming, the nnU-Net v2 raw layout, PNG previews, a provenance table, a dataset
// card (card.json + README.md) and a sha256 manifest. The folder is written under a temporary name and renamed
// when complete, and its files (0444) and folders (0555) are made read-only: a release is written once.
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { renderSliceGrid } from '../imaging/slice-grid.js';
import { encodeNifti } from '../nifti/nifti-writer.js';
import { CANVAS_SIZE, decodeAnnotation, SLICE_CHANNELS } from '../slices/presets.js';
import { SliceStoreReader } from '../slices/slice-store.js';
import {
  RELEASE_INTENDED_USE,
  RELEASE_LICENSE,
  renderReleaseReadme,
  type ReleaseCard,
  type ReleaseFacts,
} from './release-card.js';
import { listReleaseFiles, MANIFEST_FILE, manifestOf, sha256File } from './release-manifest.js';

const gzipAsync = promisify(gzip);

/** A slice store of candidates; candidates are numbered across the sources in the order given, from 0. */
export interface ReleaseSource {
  store: string;
  /** the contributing site (its name, as the card shows it) */
  site: string;
  /** e.g. 'stylegan2/cpu' */
  generator: string;
  /** the sampling job and its seed, for the provenance table */
  job?: string;
  seed?: number;
}

export interface BuildReleaseOptions {
  /** the release folder to create; must not exist */
  out: string;
  sources: readonly ReleaseSource[];
  /** candidate indices left out (the audit's withheld ones) */
  withheld: readonly number[];
  facts: ReleaseFacts;
  /** sample ids are `<casePrefix>-00001`, ...: e.g. FEDSYNTH-1a2b3c4d */
  casePrefix: string;
  /** nnU-Net dataset id, 1–999 (default 501) */
  nnunetDatasetId?: number;
  /** samples per preview sheet (default 16) */
  previewRows?: number;
  gzipLevel?: number;
}

export interface ReleaseSummary {
  folder: string;
  samples: number;
  candidates: number;
  withheld: number;
  /** relative paths of every file, MANIFEST.sha256 included */
  files: string[];
  /** sha256 of MANIFEST.sha256 (names the whole release) */
  manifestSha256: string;
  /** bytes of all files */
  bytes: number;
  card: ReleaseCard;
}

/** BraTS 2023 suffixes and the store channel each comes from; the order is nnU-Net's channel order. */
export const RELEASE_MODALITIES = [
  { suffix: 't1n', channel: 't1', nnunet: 'T1' },
  { suffix: 't1c', channel: 't1ce', nnunet: 'T1ce' },
  { suffix: 't2w', channel: 't2', nnunet: 'T2' },
  { suffix: 't2f', channel: 'flair', nnunet: 'FLAIR' },
] as const;

export const RELEASE_LABELS = { background: 0, NCR: 1, ED: 2, ET: 3 } as const;
const BATCH = 64;

export function nnunetDatasetName(id: number): string {
  if (!Number.isInteger(id) || id < 1 || id > 999)
    throw new RangeError(`nnU-Net dataset id must be 1–999, got ${id}`);
  return `Dataset${String(id).padStart(3, '0')}_fedsynth`;
}

export async function buildRelease(options: BuildReleaseOptions): Promise<ReleaseSummary> {
  if (!/^[A-Za-z0-9][A-Za-z0-9-]{0,40}$/.test(options.casePrefix)) {
    throw new RangeError(`case prefix must be 1–41 characters of A-Z a-z 0-9 -, got ${options.casePrefix}`);
  }
  if (options.sources.length === 0) throw new RangeError('a release needs at least one candidate store');
  const previewRows = options.previewRows ?? 16;
  const datasetName = nnunetDatasetName(options.nnunetDatasetId ?? 501);
  if (await exists(options.out))
    throw new Error(`release folder ${options.out} exists already; releases are written once`);

  const readers: SliceStoreReader[] = [];
  const temp = `${options.out}.partial-${randomUUID()}`;
  try {
    for (const source of options.sources) readers.push(await SliceStoreReader.open(source.store));
    const first = readers[0]!.meta;
    for (const reader of readers) {
      const m = reader.meta;
      if (m.channels.join(',') !== SLICE_CHANNELS.join(',')) {
        throw new Error(
          `candidate store ${reader.file}: channels ${m.channels.join(',')}, expected ${SLICE_CHANNELS.join(',')}`,
        );
      }
      if (m.size !== first.size) {
        throw new Error(
          `candidate store ${reader.file}: ${m.size}² slices, the first store has ${first.size}²`,
        );
      }
    }
    const candidates = readers.reduce((sum, r) => sum + r.count, 0);
    const withheld = new Set<number>();
    for (const index of options.withheld) {
      if (!Number.isInteger(index) || index < 0 || index >= candidates) {
        throw new RangeError(`withheld candidate ${index} is outside [0, ${candidates})`);
      }
      withheld.add(index);
    }

    const size = first.size;
    const plane = size * size;
    const channels = SLICE_CHANNELS.length;
    const sliceBytes = plane * channels;
    const pixel = CANVAS_SIZE / size;
    const affine = [
      [pixel, 0, 0, 0],
      [0, pixel, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 1],
    ];
    const channelIndex = (name: string) => SLICE_CHANNELS.indexOf(name as (typeof SLICE_CHANNELS)[number]);
    const segChannel = channelIndex('seg');
    const nnunetDir = `nnUNet_raw/${datasetName}`;
    await mkdir(path.join(temp, 'samples'), { recursive: true });
    await mkdir(path.join(temp, nnunetDir, 'imagesTr'), { recursive: true });
    await mkdir(path.join(temp, nnunetDir, 'labelsTr'), { recursive: true });
    await mkdir(path.join(temp, 'previews'), { recursive: true });

    const encode = async (data: Uint8Array, description: string): Promise<Buffer> =>
      gzipAsync(encodeNifti({ dims: [size, size, 1], datatype: 'uint8', data, affine, description }), {
        level: options.gzipLevel ?? 6,
      });

    const provenance: string[] = ['case,candidate,site,generator,job,seed,sample_in_job,preview'];
    const perSite = new Map<string, number>();
    const perGenerator = new Map<string, number>();
    let sheet = new Uint8Array(previewRows * sliceBytes);
    let sheetRows = 0;
    let sheetCount = 0;
    const pendingProvenance: string[] = [];
    const flushSheet = async () => {
      if (sheetRows === 0) return;
      sheetCount++;
      const name = `previews/sheet-${String(sheetCount).padStart(4, '0')}.png`;
      const png = renderSliceGrid(sheet.subarray(0, sheetRows * sliceBytes), sheetRows, { size, channels });
      await writeFile(path.join(temp, name), png);
      for (const row of pendingProvenance) provenance.push(`${row},${name}`);
      pendingProvenance.length = 0;
      sheetRows = 0;
      sheet = new Uint8Array(previewRows * sliceBytes);
    };

    let candidate = 0;
    let samples = 0;
    for (let s = 0; s < readers.length; s++) {
      const reader = readers[s]!;
      const source = options.sources[s]!;
      for (let start = 0; start < reader.count; start += BATCH) {
        const n = Math.min(BATCH, reader.count - start);
        const batch = await reader.readRange(start, n);
        for (let k = 0; k < n; k++, candidate++) {
          if (withheld.has(candidate)) continue;
          samples++;
          const caseId = `${options.casePrefix}-${String(samples).padStart(5, '0')}`;
          const slice = batch.subarray(k * sliceBytes, (k + 1) * sliceBytes);
          // NHWC (row y, column x) → x-fastest planes: the same pixel order, one channel at a time
          const planeOf = (c: number, map?: (v: number) => number) => {
            const out = new Uint8Array(plane);
            for (let p = 0; p < plane; p++)
              out[p] = map ? map(slice[p * channels + c]!) : slice[p * channels + c]!;
            return out;
          };
          const caseDir = path.join(temp, 'samples', caseId);
          await mkdir(caseDir);
          for (let m = 0; m < RELEASE_MODALITIES.length; m++) {
            const modality = RELEASE_MODALITIES[m]!;
            const bytes = await encode(
              planeOf(channelIndex(modality.channel)),
              `fedsynth synthetic ${modality.suffix}`,
            );
            await writeFile(path.join(caseDir, `${caseId}-${modality.suffix}.nii.gz`), bytes);
            await writeFile(
              path.join(temp, nnunetDir, 'imagesTr', `${caseId}_${String(m).padStart(4, '0')}.nii.gz`),
              bytes,
            );
          }
          const seg = await encode(
            planeOf(segChannel, decodeAnnotation),
            'fedsynth synthetic seg 1NCR 2ED 3ET',
          );
          await writeFile(path.join(caseDir, `${caseId}-seg.nii.gz`), seg);
          await writeFile(path.join(temp, nnunetDir, 'labelsTr', `${caseId}.nii.gz`), seg);

          sheet.set(slice, sheetRows * sliceBytes);
          sheetRows++;
          pendingProvenance.push(
            [
              caseId,
              candidate,
              csv(source.site),
              csv(source.generator),
              csv(source.job ?? ''),
              source.seed ?? '',
              start + k,
            ].join(','),
          );
          if (sheetRows === previewRows) await flushSheet();
          perSite.set(source.site, (perSite.get(source.site) ?? 0) + 1);
          perGenerator.set(source.generator, (perGenerator.get(source.generator) ?? 0) + 1);
        }
      }
    }
    await flushSheet();
    await writeFile(path.join(temp, 'provenance.csv'), `${provenance.join('\n')}\n`);

    const datasetJson = {
      channel_names: Object.fromEntries(RELEASE_MODALITIES.map((m, i) => [String(i), m.nnunet])),
      labels: { ...RELEASE_LABELS },
      numTraining: samples,
      file_ending: '.nii.gz',
      name: datasetName,
      description: `${options.facts.title}: synthetic 2-D brain-tumour MRI slices, not for clinical use`,
      reference: 'fedsynth (Akbar, Larsson & Eklund, Scientific Data 2024)',
      licence: RELEASE_LICENSE,
      release: options.facts.version !== undefined ? `v${options.facts.version}` : options.facts.createdAt,
    };
    await writeFile(path.join(temp, nnunetDir, 'dataset.json'), `${JSON.stringify(datasetJson, null, 2)}\n`);

    const card: ReleaseCard = {
      format: 'fedsynth-release-card',
      formatVersion: 1,
      ...options.facts,
      samples,
      candidates,
      withheld: withheld.size,
      generators: [...perGenerator].map(([generator, n]) => ({ generator, samples: n })),
      sites: [...perSite].map(([site, n]) => ({ site, samples: n })),
      image: {
        size,
        channels: [...SLICE_CHANNELS],
        pixelSpacingMm: pixel,
        dtype: 'uint8',
        preset: first.preset,
      },
      labels: { ...RELEASE_LABELS },
      layout: {
        samples: 'samples/',
        nnunet: `${nnunetDir}/`,
        previews: 'previews/',
        provenance: 'provenance.csv',
        manifest: MANIFEST_FILE,
      },
      license: RELEASE_LICENSE,
      intendedUse: RELEASE_INTENDED_USE,
    };
    await writeFile(path.join(temp, 'card.json'), `${JSON.stringify(card, null, 2)}\n`);
    await writeFile(path.join(temp, 'README.md'), renderReleaseReadme(card));

    const listed = await listReleaseFiles(temp);
    const manifest = await manifestOf(temp, listed);
    await writeFile(path.join(temp, MANIFEST_FILE), manifest);
    const files = await listReleaseFiles(temp);
    let bytes = 0;
    for (const file of files) {
      const full = path.join(temp, ...file.split('/'));
      bytes += (await stat(full)).size;
      await chmod(full, 0o444);
    }
    await rename(temp, options.out);
    // folders last (deepest first): nothing can be added, renamed or removed inside a release afterwards
    await setFolderModes(options.out, 0o555);
    return {
      folder: options.out,
      samples,
      candidates,
      withheld: withheld.size,
      files,
      manifestSha256: await sha256File(path.join(options.out, MANIFEST_FILE)),
      bytes,
      card,
    };
  } catch (error) {
    await removeReleaseFolder(temp);
    throw error;
  } finally {
    await Promise.all(readers.map((r) => r.close()));
  }
}

/** chmod of every folder under (and including) `dir`, children first. */
async function setFolderModes(dir: string, mode: number): Promise<void> {
  if (mode & 0o200) await chmod(dir, mode); // opening up: the parent first, so its children can be reached
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await setFolderModes(path.join(dir, entry.name), mode);
  }
  if (!(mode & 0o200)) await chmod(dir, mode);
}

/**
 * Removes a (possibly read-only) release folder: its folders are made writable first, as `rm -r` needs write
 * permission on a folder to unlink its entries. For leftovers of interrupted builds and for tests.
 */
export async function removeReleaseFolder(dir: string): Promise<void> {
  if (!(await exists(dir))) return;
  if ((await stat(dir)).isDirectory()) await setFolderModes(dir, 0o755);
  await rm(dir, { recursive: true, force: true });
}

function csv(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
