// `fedsynth train-gen` and `fedsynth sample`: a generator trained on a site's slices in worker threads, and
// synthetic 5-channel slices drawn from it (slice store, optional 4-D NIfTI, PNG grid).
import type { Command } from 'commander';
import { parseBackendPreference, selectBackend } from '@fedsynth/common/ml/backend/index';
import {
  compareSliceStores,
  GENERATOR_NAMES,
  isGeneratorName,
  sampleFromGenerator,
  trainGenerator,
  type GeneratorName,
  type SampleResult,
  type StoreSelection,
} from '@fedsynth/common/ml/jobs/index';
import { StderrProgress } from '@fedsynth/common/util/progress';
import { parseInteger, UsageError } from '../cli-errors.js';
import { addTrainingRunOptions, parseTrainingRunOptions, type TrainingRunFlags } from '../cli-training.js';
import { stopOnSignal } from '../cli-signals.js';

interface TrainGenOptions extends TrainingRunFlags {
  model: string;
}

interface SampleOptions {
  model: string;
  n: string;
  out: string;
  nifti?: string;
  seed: string;
  truncation: string;
  ddimSteps: string;
  raw?: boolean;
  compareTo?: string;
  features?: string;
  backend?: string;
  json?: boolean;
}

interface CompareOptions {
  real: string;
  synthetic: string;
  realSplit: string;
  syntheticSplit: string;
  features?: string;
  backend?: string;
  json?: boolean;
}

const SELECTIONS: readonly StoreSelection[] = ['train', 'test', 'all'];

function parseSelection(flag: string, value: string): StoreSelection {
  if (!(SELECTIONS as readonly string[]).includes(value))
    throw new UsageError(`${flag} must be one of ${SELECTIONS.join(', ')}, got "${value}"`);
  return value as StoreSelection;
}

function printQuality(quality: NonNullable<SampleResult['quality']>): void {
  const { report, verdict } = quality;
  const channels = Object.entries(report.channels)
    .map(([name, c]) => `${name} ${c.intersection.toFixed(2)}`)
    .join(', ');
  console.log(`histogram intersection vs real: ${channels}`);
  console.log(
    `WT mean area real ${report.labels.WT.realMeanArea.toFixed(4)} / synthetic ${report.labels.WT.syntheticMeanArea.toFixed(4)} (KS ${report.labels.WT.ks?.toFixed(2) ?? 'n/a'}); diversity ratio ${report.diversity.ratio?.toFixed(2) ?? 'n/a'}`,
  );
  if (report.frechet) {
    const fd = report.frechet;
    console.log(
      `Fréchet distance ${fd.distance.toFixed(3)} (mean term ${fd.meanTerm.toFixed(3)}, covariance term ${fd.covarianceTerm.toFixed(3)}; ` +
        `${fd.realCount} real vs ${fd.syntheticCount} synthetic) in the ${fd.dim}-d feature space of ${fd.featureNetwork} — not FID, comparable only with the same feature network`,
    );
  }
  console.log(
    verdict.ok
      ? 'verdict: recognisably like the real slices'
      : `verdict: not yet — ${verdict.reasons.join('; ')}`,
  );
}

export function registerGeneratorCommands(program: Command): void {
  addTrainingRunOptions(
    program
      .command('train-gen')
      .description(
        'train a generator (progan, stylegan1/2/3, ddpm) on slices in worker threads (progress, checkpoints, resume)',
      ),
    { steps: 2000, tinySize: '16² or 32²', cpu32: true },
  )
    .requiredOption('--model <name>', GENERATOR_NAMES.join(' | '))
    .requiredOption(
      '--out <dir>',
      'model folder: generator.weights, training.weights, generator.json, checkpoints/',
    )
    .option('--json', 'print the generator card as JSON')
    .action(async (opts: TrainGenOptions) => {
      if (!isGeneratorName(opts.model))
        throw new UsageError(`--model must be one of ${GENERATOR_NAMES.join(', ')}, got "${opts.model}"`);
      const settings = parseTrainingRunOptions(opts, ['paper', 'cpu', 'cpu32', 'tiny'] as const);
      const progress = new StderrProgress('train-gen', 'steps');
      const { card, dir } = await stopOnSignal('train-gen', (signal) =>
        trainGenerator({
          ...settings,
          model: opts.model as GeneratorName,
          signal,
          onProgress: (p) =>
            progress.update(
              p.step,
              p.steps,
              `loss ${p.loss.toFixed(4)} ${p.imagesPerSecond.toFixed(1)} img/s`,
            ),
          log: (line) => process.stderr.write(`${line}\n`),
        }),
      );
      progress.finish();
      if (opts.json) console.log(JSON.stringify(card, null, 2));
      else {
        console.log(
          `${dir}: ${card.architecture.name} trained ${card.steps} steps${card.timeLimitReached ? ' (time limit reached: --resume continues)' : card.cancelled ? ' (cancelled: --resume continues)' : ''} on ` +
            `${card.trainedOn.trainSlices} slices in ${card.trainingSeconds.toFixed(0)} s (${card.workers} workers on ${card.backend.name})`,
        );
      }
    });

  program
    .command('sample')
    .description(
      'draw synthetic 5-channel slices from a trained generator into a slice store (+ NIfTI, PNG grid)',
    )
    .requiredOption('--model <dir>', 'folder written by train-gen (or a generator .weights file)')
    .requiredOption('--n <k>', 'number of slices')
    .requiredOption(
      '--out <file>',
      'slice store to write (.fss); a PNG grid of the first samples goes beside it',
    )
    .option('--nifti <file>', 'also write a 4-D NIfTI [W, H, N, 5]')
    .option('--seed <s>', 'seed: the same seed draws the same slices', '0')
    .option('--truncation <psi>', 'GANs: truncation ψ (1 = none)', '1')
    .option('--ddim-steps <n>', 'diffusion: DDIM steps (0 = full ancestral sampler)', '50')
    .option(
      '--raw',
      'keep the output as generated: no shared brain mask (by default a pixel black in any sequence is background)',
    )
    .option(
      '--compare-to <store>',
      'real slices (.fss) to compare with: histograms, label areas, diversity, verdict',
    )
    .option(
      '--features <dir>',
      'with --compare-to: a trained U-Net (train-seg folder) whose encoder gives the Fréchet distance',
    )
    .option('--backend <name>', 'auto | tensorflow-gpu | tensorflow | wasm | cpu')
    .option('--json', 'print a summary as JSON')
    .action(async (opts: SampleOptions) => {
      if (opts.features && !opts.compareTo) throw new UsageError('--features needs --compare-to <real.fss>');
      const truncation = Number(opts.truncation);
      if (!(truncation >= 0 && truncation <= 1))
        throw new UsageError(`--truncation must be in [0, 1], got "${opts.truncation}"`);
      const progress = new StderrProgress('sample', 'slices');
      const result = await sampleFromGenerator({
        model: opts.model,
        n: parseInteger('--n', opts.n, 1),
        out: opts.out,
        nifti: opts.nifti,
        seed: parseInteger('--seed', opts.seed),
        truncationPsi: truncation,
        ddimSteps: parseInteger('--ddim-steps', opts.ddimSteps),
        raw: opts.raw === true,
        compareTo: opts.compareTo,
        features: opts.features,
        backend: opts.backend ? parseBackendPreference(opts.backend, '--backend') : undefined,
        onProgress: (done, total) => progress.update(done, total),
        log: (line) => process.stderr.write(`${line}\n`),
      });
      progress.finish();
      if (opts.json) console.log(JSON.stringify(result, null, 2));
      else {
        console.log(
          `${result.out}: ${result.count} slices ${result.size}² from ${result.architecture.name} in ${result.seconds.toFixed(1)} s; ` +
            `showing NCR ${result.labelPresence.NCR}, ED ${result.labelPresence.ED}, ET ${result.labelPresence.ET}; ` +
            `${result.maskedPixels} pixels outside the shared brain mask set to background` +
            `${result.grid ? `; grid ${result.grid}` : ''}`,
        );
        if (result.quality) printQuality(result.quality);
      }
    });

  program
    .command('compare')
    .description(
      'compare synthetic slices with real ones: histograms, label areas, diversity, verdict (+ Fréchet distance)',
    )
    .requiredOption('--real <store>', 'real slices (.fss)')
    .requiredOption('--synthetic <store>', 'synthetic slices (.fss), e.g. written by sample')
    .option('--real-split <which>', 'labelled subjects of the real store: train | test | all', 'train')
    .option(
      '--synthetic-split <which>',
      'labelled subjects of the synthetic store: train | test | all',
      'all',
    )
    .option('--features <dir>', 'a trained U-Net (train-seg folder) whose encoder gives the Fréchet distance')
    .option('--backend <name>', 'auto | tensorflow-gpu | tensorflow | wasm | cpu')
    .option('--json', 'print the report as JSON')
    .action(async (opts: CompareOptions) => {
      const realSplit = parseSelection('--real-split', opts.realSplit);
      const syntheticSplit = parseSelection('--synthetic-split', opts.syntheticSplit);
      if (opts.features) {
        await selectBackend({
          prefer: opts.backend ? parseBackendPreference(opts.backend, '--backend') : undefined,
          logger: (line) => process.stderr.write(`${line}\n`),
        });
      }
      const quality = await compareSliceStores({
        real: opts.real,
        realSplit,
        synthetic: opts.synthetic,
        syntheticSplit,
        features: opts.features,
      });
      if (opts.json) console.log(JSON.stringify(quality, null, 2));
      else {
        console.log(
          `${opts.synthetic} (${syntheticSplit}, ${quality.report.syntheticCount} slices) vs ${opts.real} (${realSplit}, ${quality.report.realCount} slices)`,
        );
        printQuality(quality);
      }
    });
}
