// Train a generator (Progressive GAN, StyleGAN 1/2/3 or the diffusion model) on a site's slices in worker
// threads, and draw synthetic 5-channel slices from it. The CLI (train-gen, sample) and the site agent call these.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { renderSliceGrid } from '../../imaging/slice-grid.js';
import { ANNOTATION_OF_CANONICAL, SLICE_CHANNELS, type SlicePresetName } from '../../slices/presets.js';
import { exportSliceStoreNifti } from '../../slices/slice-nifti-export.js';
import { applySharedBrainMask } from '../../slices/shared-brain-mask.js';
import { SliceStoreReader, SliceStoreWriter } from '../../slices/slice-store.js';
import { selectBackend, type BackendPreference } from '../backend/index.js';
import { frechetDistanceOfSets, loadFeatureNetwork } from '../evaluation/frechet-features.js';
import {
  compareSampleSets,
  recognisablySimilar,
  type SampleQualityReport,
  type SliceSet,
} from '../evaluation/sample-quality.js';
import {
  buildDdpmFromArchitecture,
  ddpmArchitecture,
  sampleDdpm,
  type DdpmProfile,
} from '../generators/ddpm/index.js';
import {
  DDPM_PROFILE_TRAINING,
  DDPM_TASK_KIND,
  DDPM_TASK_MODULE,
  type DdpmTaskConfig,
} from '../generators/ddpm/ddpm-task.js';
import { GAN_TASK_KIND, GAN_TASK_MODULE, type GanTaskConfig } from '../generators/gan/gan-task.js';
import { ganConfig } from '../generators/gan/registry.js';
import { loadGenerator } from '../generators/gan/registry.js';
import { sampleGenerator } from '../generators/gan/sampling.js';
import type { ModelArchitecture } from '../model.js';
import { assignWeights, decodeWeights } from '../weights/index.js';
import { modelInputSize, presetForInputSize, writeAtomic } from './job-files.js';
import { runTrainingJob, type TrainedModelFacts, type TrainingJobOptions } from './training-job.js';

export const GENERATOR_NAMES = ['progan', 'stylegan1', 'stylegan2', 'stylegan3', 'ddpm'] as const;
export type GeneratorName = (typeof GENERATOR_NAMES)[number];
export type GeneratorProfile = 'paper' | 'cpu' | 'cpu32' | 'tiny';
/** What `sample` loads: the generator alone (the EMA copy for GANs and, when kept, for the diffusion model). */
export const GENERATOR_WEIGHTS_FILE = 'generator.weights';
/** Everything trained (GAN: G and D), for resuming elsewhere or FedAvg. */
export const TRAINING_WEIGHTS_FILE = 'training.weights';
export const GENERATOR_CARD_FILE = 'generator.json';

export const GAN_MODULES: Record<Exclude<GeneratorName, 'ddpm'>, string> = {
  progan: new URL('../generators/progan/index.js', import.meta.url).href,
  stylegan1: new URL('../generators/stylegan1/index.js', import.meta.url).href,
  stylegan2: new URL('../generators/stylegan2/index.js', import.meta.url).href,
  stylegan3: new URL('../generators/stylegan3/index.js', import.meta.url).href,
};

export function isGeneratorName(value: string): value is GeneratorName {
  return (GENERATOR_NAMES as readonly string[]).includes(value);
}

export async function ganArchitectureRecord(
  name: Exclude<GeneratorName, 'ddpm'>,
  profile: GeneratorProfile,
): Promise<ModelArchitecture> {
  await import(GAN_MODULES[name]);
  return { name, config: ganConfig(name, { profile }) };
}

export interface TrainGeneratorOptions extends TrainingJobOptions {
  model: GeneratorName;
  profile: GeneratorProfile;
}

export interface GeneratorCard extends TrainedModelFacts {
  format: 'fedsynth-generator';
  /** whether generator.weights holds the moving-average copy */
  ema: boolean;
}

export async function trainGenerator(
  options: TrainGeneratorOptions,
): Promise<{ card: GeneratorCard; dir: string }> {
  const isDiffusion = options.model === 'ddpm';
  const ganName = options.model as Exclude<GeneratorName, 'ddpm'>;
  const architecture = isDiffusion
    ? ddpmArchitecture(options.profile satisfies DdpmProfile)
    : await ganArchitectureRecord(ganName, options.profile);
  // Generators learn (image, annotation) pairs: unlabelled subjects would teach tumours without labels.
  const { dir, result, facts } = await runTrainingJob(options, architecture, (store) =>
    isDiffusion
      ? {
          kind: DDPM_TASK_KIND,
          config: {
            architecture,
            store,
            mirror: true,
            labelledOnly: true,
            ...DDPM_PROFILE_TRAINING[options.profile],
          } satisfies DdpmTaskConfig,
          taskModules: [DDPM_TASK_MODULE],
        }
      : {
          kind: GAN_TASK_KIND,
          config: {
            // The profile too: its recipe changes (GanArchitecture.profileOptions) apply.
            architecture: { ...architecture, profile: options.profile },
            store,
            subjects: 'labelled',
            mirror: true,
          } satisfies GanTaskConfig,
          taskModules: [GAN_TASK_MODULE, GAN_MODULES[ganName]],
        },
  );
  const card: GeneratorCard = {
    format: 'fedsynth-generator',
    ...facts,
    ema: result.emaWeightsBlob !== undefined,
  };
  await writeAtomic(path.join(dir, TRAINING_WEIGHTS_FILE), result.weightsBlob);
  await writeAtomic(path.join(dir, GENERATOR_WEIGHTS_FILE), result.emaWeightsBlob ?? result.weightsBlob);
  await writeAtomic(path.join(dir, GENERATOR_CARD_FILE), Buffer.from(JSON.stringify(card, null, 2)));
  return { card, dir };
}

export interface SampleOptions {
  /** folder written by train-gen, or a generator weights file */
  model: string;
  n: number;
  /** slice store to write (.fss) */
  out: string;
  seed?: number;
  /** GANs: truncation ψ (default 1 = none) */
  truncationPsi?: number;
  /** diffusion: DDIM steps (default 50); 0 = the full ancestral sampler */
  ddimSteps?: number;
  /**
   * Keep the generator's output as it is: no shared brain mask (applySharedBrainMask: a pixel black in any sequence
   * becomes background in all channels, as in every real skull-stripped slice). Default false.
   */
  raw?: boolean;
  nifti?: string;
  /** PNG grid of the first samples beside the store (default: out with .png) */
  grid?: string | false;
  backend?: BackendPreference;
  /** a slice store of real slices (its labelled training subjects) to compare the samples with */
  compareTo?: string;
  /** with compareTo: a trained U-Net (train-seg folder) whose encoder gives the Fréchet distance's features */
  features?: string;
  log?: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
}

export interface SampleResult {
  out: string;
  count: number;
  size: number;
  architecture: ModelArchitecture;
  seconds: number;
  nifti?: string;
  grid?: string;
  /** pixels the shared brain mask turned into background (0 with `raw`) */
  maskedPixels: number;
  /** samples per canonical label present (a slice counts once per label it shows) */
  labelPresence: { NCR: number; ED: number; ET: number };
  /** with compareTo: intensity histograms, label areas and diversity against the real slices, and a verdict */
  quality?: { report: SampleQualityReport; verdict: { ok: boolean; reasons: string[] } };
}

export async function sampleFromGenerator(options: SampleOptions): Promise<SampleResult> {
  const started = Date.now();
  if (options.features && !options.compareTo) throw new Error('features: needs compareTo (the real slices)');
  const weightsFile = options.model.endsWith('.weights')
    ? options.model
    : path.join(options.model, GENERATOR_WEIGHTS_FILE);
  const blob = await readFile(weightsFile);
  const { manifest, tensors } = decodeWeights(blob, weightsFile);
  const architecture = manifest.architecture as ModelArchitecture;
  await selectBackend({ prefer: options.backend, logger: options.log });
  const seed = options.seed ?? 0;
  const size = modelInputSize(architecture);
  let bytes: Uint8Array;
  if (architecture.name === 'ddpm') {
    const model = buildDdpmFromArchitecture(architecture, 0);
    try {
      assignWeights(model.variables, tensors);
      const ddim = options.ddimSteps ?? 50;
      bytes = await sampleDdpm(model, {
        count: options.n,
        seed,
        sampler: ddim > 0 ? { method: 'ddim', steps: ddim } : { method: 'ancestral' },
        onProgress: (p) => options.onProgress?.(p.images, p.count),
      });
    } finally {
      model.dispose();
    }
  } else {
    if (!(architecture.name in GAN_MODULES))
      throw new Error(`${weightsFile}: not a generator (${architecture.name})`);
    await import(GAN_MODULES[architecture.name as keyof typeof GAN_MODULES]);
    const generator = loadGenerator(blob, weightsFile);
    try {
      bytes = sampleGenerator(generator, { n: options.n, seed, truncationPsi: options.truncationPsi });
      options.onProgress?.(options.n, options.n);
    } finally {
      generator.dispose();
    }
  }
  const maskedPixels = options.raw ? 0 : applySharedBrainMask(bytes);
  const out = path.resolve(options.out);
  await mkdir(path.dirname(out), { recursive: true });
  const preset: SlicePresetName = presetForInputSize(size);
  const writer = await SliceStoreWriter.create(out, {
    preset,
    scale: 'max',
    size,
    channels: [...SLICE_CHANNELS],
    dtype: 'uint8',
    layout: 'NHWC',
    annotation: {
      NCR: ANNOTATION_OF_CANONICAL[1]!,
      ED: ANNOTATION_OF_CANONICAL[2]!,
      ET: ANNOTATION_OF_CANONICAL[3]!,
    },
    split: { seed, testFraction: 0 },
    createdAt: new Date().toISOString(),
  });
  try {
    await writer.addSubject(
      {
        id: `synthetic-${architecture.name}-seed${seed}`,
        split: 'train',
        labelled: true,
        z: Array.from({ length: options.n }, (_, i) => i),
        sourceDims: [size, size, options.n],
        reference: {},
      },
      bytes,
    );
    await writer.close();
  } catch (error) {
    await writer.abort();
    throw error;
  }
  const labelPresence = { NCR: 0, ED: 0, ET: 0 };
  const channels = SLICE_CHANNELS.length;
  const plane = size * size;
  for (let n = 0; n < options.n; n++) {
    const seen = new Set<number>();
    for (let p = 0; p < plane; p++) seen.add(bytes[(n * plane + p) * channels + channels - 1]!);
    if (seen.has(ANNOTATION_OF_CANONICAL[1]!)) labelPresence.NCR++;
    if (seen.has(ANNOTATION_OF_CANONICAL[2]!)) labelPresence.ED++;
    if (seen.has(ANNOTATION_OF_CANONICAL[3]!)) labelPresence.ET++;
  }
  let grid: string | undefined;
  if (options.grid !== false) {
    grid = options.grid ?? out.replace(/\.fss$/, '') + '.png';
    const shown = Math.min(8, options.n);
    await writeFile(
      grid,
      renderSliceGrid(bytes.subarray(0, shown * plane * channels), shown, { size, channels }),
    );
  }
  const nifti = options.nifti ? await exportSliceStoreNifti(out, options.nifti) : undefined;
  const quality = options.compareTo
    ? await compareSliceStores({
        real: options.compareTo,
        synthetic: { slices: bytes, count: options.n, size },
        features: options.features,
      })
    : undefined;
  return {
    out,
    count: options.n,
    size,
    architecture,
    seconds: (Date.now() - started) / 1000,
    nifti,
    grid,
    maskedPixels,
    labelPresence,
    quality,
  };
}

/** Which slices of a store: the labelled subjects of its train or test split, or all labelled subjects. */
export type StoreSelection = 'train' | 'test' | 'all';

export interface CompareSliceStoresOptions {
  /** real slices (.fss) */
  real: string;
  /** default 'train': what the generators learn from */
  realSplit?: StoreSelection;
  /** synthetic slices: a store (.fss) or slices in memory */
  synthetic: string | SliceSet;
  /** default 'all' */
  syntheticSplit?: StoreSelection;
  /** a trained U-Net (train-seg folder or .weights) for the Fréchet distance; without it, none is computed */
  features?: string;
}

async function readSelection(file: string, selection: StoreSelection): Promise<SliceSet> {
  const store = await SliceStoreReader.open(file);
  try {
    const indices =
      selection === 'all'
        ? [
            ...store.indicesOf('train', { labelledOnly: true }),
            ...store.indicesOf('test', { labelledOnly: true }),
          ]
        : store.indicesOf(selection, { labelledOnly: true });
    if (indices.length === 0) throw new Error(`${file}: no labelled slices in the ${selection} selection`);
    return { slices: await store.readIndices(indices), count: indices.length, size: store.meta.size };
  } finally {
    await store.close();
  }
}

/** Compares synthetic slices with real ones: the sample-quality report, a verdict and optionally the FD. */
export async function compareSliceStores(
  options: CompareSliceStoresOptions,
): Promise<NonNullable<SampleResult['quality']>> {
  const real = await readSelection(options.real, options.realSplit ?? 'train');
  const synthetic =
    typeof options.synthetic === 'string'
      ? await readSelection(options.synthetic, options.syntheticSplit ?? 'all')
      : options.synthetic;
  if (real.size !== synthetic.size) {
    throw new Error(`${options.real}: real slices are ${real.size}², the synthetic ones ${synthetic.size}²`);
  }
  const report = compareSampleSets(real, synthetic);
  if (options.features) {
    const network = await loadFeatureNetwork(options.features);
    try {
      report.frechet = await frechetDistanceOfSets(network, real, synthetic);
    } finally {
      network.dispose();
    }
  }
  return { report, verdict: recognisablySimilar(report) };
}
