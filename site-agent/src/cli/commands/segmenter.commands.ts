// `fedsynth train-seg` and `fedsynth eval-seg`: a segmenter trained on slices in worker threads, and measured
// per subject on held-out real cases (Dice and HD95 per label and BraTS region).
import type { Command } from 'commander';
import { parseBackendPreference } from '@fedsynth/common/ml/backend/index';
import { evaluateSegmenterModel, trainSegmenter } from '@fedsynth/common/ml/jobs/index';
import type { MetricsSummary } from '@fedsynth/common/ml/metrics/index';
import { StderrProgress } from '@fedsynth/common/util/progress';
import { UsageError } from '../cli-errors.js';
import { addTrainingRunOptions, parseTrainingRunOptions, type TrainingRunFlags } from '../cli-training.js';
import { stopOnSignal } from '../cli-signals.js';

interface TrainOptions extends TrainingRunFlags {
  model: string;
  augment: boolean;
}

interface EvalOptions {
  model: string;
  data: string;
  split?: string;
  backend?: string;
  json?: boolean;
}

export function formatSummary(summary: MetricsSummary): string {
  const rows = [['', 'Dice mean', 'HD95 mean (mm)', 'Dice median']];
  const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : String(n));
  for (const [name, v] of Object.entries(summary.mean.labels)) {
    rows.push([
      name,
      fmt(v.dice),
      fmt(v.hd95),
      fmt(summary.median.labels[name as keyof typeof summary.median.labels].dice),
    ]);
  }
  for (const [name, v] of Object.entries(summary.mean.regions)) {
    const shown = name === 'ETr' ? 'ET (region)' : name;
    rows.push([
      shown,
      fmt(v.dice),
      fmt(v.hd95),
      fmt(summary.median.regions[name as keyof typeof summary.median.regions].dice),
    ]);
  }
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(12) : c.padStart(15))).join('')).join('\n');
}

export function registerSegmenterCommands(program: Command): void {
  addTrainingRunOptions(
    program
      .command('train-seg')
      .description(
        'train a U-Net or Swin segmenter on slices, in worker threads (progress, checkpoints, resume)',
      ),
    { steps: 1000, tinySize: '32²' },
  )
    .requiredOption('--out <dir>', 'model folder: model.weights, model.json, checkpoints/')
    .option('--model <name>', 'unet | swin', 'unet')
    .option('--no-augment', 'train without the nnU-Net augmentation')
    .option('--json', 'print the model card as JSON')
    .action(async (opts: TrainOptions) => {
      if (opts.model !== 'unet' && opts.model !== 'swin')
        throw new UsageError(`--model must be unet or swin, got "${opts.model}"`);
      const settings = parseTrainingRunOptions(opts, ['paper', 'cpu', 'tiny'] as const);
      const progress = new StderrProgress('train-seg', 'steps');
      const { card, dir } = await stopOnSignal('train-seg', (signal) =>
        trainSegmenter({
          ...settings,
          model: opts.model as 'unet' | 'swin',
          augmentation: opts.augment ? 'nnunet' : 'none',
          signal,
          onProgress: (p) =>
            progress.update(
              p.step,
              p.steps,
              `loss ${p.loss.toFixed(4)} ${p.imagesPerSecond.toFixed(1)} img/s lr ${p.lr.toExponential(2)}`,
            ),
          log: (line) => process.stderr.write(`${line}\n`),
        }),
      );
      progress.finish();
      if (opts.json) console.log(JSON.stringify(card, null, 2));
      else {
        console.log(
          `${dir}: ${card.architecture.name} trained ${card.steps} steps${card.timeLimitReached ? ' (time limit reached: --resume continues)' : card.cancelled ? ' (cancelled: --resume continues)' : ''} ` +
            `on ${card.trainedOn.trainSlices} slices of ${card.trainedOn.trainSubjects} subjects in ${card.trainingSeconds.toFixed(0)} s ` +
            `(${card.workers} workers on ${card.backend.name}); final loss ${card.finalLoss.toFixed(4)}`,
        );
      }
    });

  program
    .command('eval-seg')
    .description(
      'measure a trained segmenter per subject: Dice and HD95 per label (ET, ED, NCR) and region (WT, TC, ET)',
    )
    .requiredOption('--model <dir>', 'model folder written by train-seg (or a .weights file)')
    .requiredOption('--data <path>', 'folder of held-out BraTS cases, or a slice store (its test subjects)')
    .option('--split <name>', 'test | train | all (default: all for a folder, test for a store)')
    .option('--backend <name>', 'auto | tensorflow-gpu | tensorflow | wasm | cpu')
    .option('--json', 'print per-subject and mean metrics as JSON')
    .action(async (opts: EvalOptions) => {
      if (opts.split !== undefined && !['test', 'train', 'all'].includes(opts.split)) {
        throw new UsageError(`--split must be test, train or all, got "${opts.split}"`);
      }
      const progress = new StderrProgress('eval-seg', 'subjects');
      const result = await evaluateSegmenterModel({
        model: opts.model,
        data: opts.data,
        split: opts.split as 'test' | 'train' | 'all' | undefined,
        backend: opts.backend ? parseBackendPreference(opts.backend, '--backend') : undefined,
        onProgress: (done, total, subject) => progress.update(done, total, subject),
        log: (line) => process.stderr.write(`${line}\n`),
      });
      progress.finish();
      if (opts.json) {
        console.log(
          JSON.stringify(
            {
              architecture: result.architecture,
              store: result.store,
              perSubject: result.perSubject,
              summary: result.summary,
              unlabelled: result.unlabelled,
            },
            null,
            2,
          ),
        );
      } else {
        console.log(`${result.architecture.name} on ${result.summary.subjects} subjects (${result.store}):`);
        console.log(formatSummary(result.summary));
      }
    });
}
