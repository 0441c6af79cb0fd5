// The options every training command shares (train-seg, train-gen), declared and parsed in one place.
import type { Command } from 'commander';
import os from 'node:os';
import { parseBackendPreference, type BackendPreference } from '@fedsynth/common/ml/backend/index';
import { parseInteger, UsageError } from './cli-errors.js';

export interface TrainingRunFlags {
  data: string;
  out: string;
  profile: string;
  steps: string;
  batch: string;
  workers: string;
  seed: string;
  checkpointEvery: string;
  resume?: boolean;
  maxMinutes?: string;
  backend?: string;
  json?: boolean;
}

/** Model sizes a training command may offer (cpu32: generators only). */
export type TrainingProfile = 'paper' | 'cpu' | 'cpu32' | 'tiny';

export interface TrainingRunSettings<P extends TrainingProfile = TrainingProfile> {
  data: string;
  out: string;
  profile: P;
  steps: number;
  batchSize: number;
  workers: number;
  seed: number;
  checkpointEvery: number;
  resume?: boolean;
  maxSeconds?: number;
  backend?: BackendPreference;
}

export function addTrainingRunOptions(
  command: Command,
  defaults: { steps: number; tinySize: string; cpu32?: boolean },
): Command {
  return command
    .requiredOption(
      '--data <path>',
      'slice store (.fss) or folder of BraTS cases (sliced with the matching preset)',
    )
    .option(
      '--profile <name>',
      `paper (256², GPU) | cpu (64²) | ${defaults.cpu32 ? 'cpu32 (32², the cpu widths) | ' : ''}tiny (${defaults.tinySize}, tests)`,
      'cpu',
    )
    .option('--steps <n>', 'optimizer steps', String(defaults.steps))
    .option('--batch <n>', 'global batch size (split over the workers)', '8')
    .option(
      '--workers <n>',
      'data-parallel worker threads',
      String(Math.max(1, Math.min(os.availableParallelism(), 4))),
    )
    .option('--seed <n>', 'seed of initialisation, sampling and augmentation', '1')
    .option('--checkpoint-every <n>', 'steps between checkpoints (0: only at the end)', '100')
    .option('--resume', 'continue from the newest checkpoint in <out>/checkpoints')
    .option(
      '--max-minutes <m>',
      'stop after this much wall-clock time (a checkpoint is kept; --resume continues)',
    )
    .option('--backend <name>', 'auto | tensorflow-gpu | tensorflow | wasm | cpu');
}

export function parseTrainingRunOptions<P extends TrainingProfile>(
  flags: TrainingRunFlags,
  profiles: readonly P[],
): TrainingRunSettings<P> {
  if (!(profiles as readonly string[]).includes(flags.profile)) {
    throw new UsageError(`--profile must be one of ${profiles.join(', ')}, got "${flags.profile}"`);
  }
  return {
    data: flags.data,
    out: flags.out,
    profile: flags.profile as P,
    steps: parseInteger('--steps', flags.steps, 1),
    batchSize: parseInteger('--batch', flags.batch, 1),
    workers: parseInteger('--workers', flags.workers, 1),
    seed: parseInteger('--seed', flags.seed),
    checkpointEvery: parseInteger('--checkpoint-every', flags.checkpointEvery),
    resume: flags.resume,
    maxSeconds: flags.maxMinutes === undefined ? undefined : parseMinutes(flags.maxMinutes) * 60,
    backend: flags.backend ? parseBackendPreference(flags.backend, '--backend') : undefined,
  };
}

function parseMinutes(value: string): number {
  const minutes = Number(value);
  if (!Number.isFinite(minutes) || minutes <= 0)
    throw new UsageError(`--max-minutes must be a positive number, got "${value}"`);
  return minutes;
}
