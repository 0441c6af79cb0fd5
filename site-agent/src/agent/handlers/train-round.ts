// 'train-round': one round of local training for a study. Starts from the global weights (and EMA) when the
// coordinator sends them, else from the model's seeded init; trains `localSteps` on the site's private training
// slices (or, for segmenters, the real/synthetic mix of payload.data) in worker threads; uploads the weights (and
// the EMA when the model keeps one) as round updates. Only weights and counts leave the site.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type TrainRoundPayload, trainRoundPayloadSchema } from '@fedsynth/common/protocol/job-payloads';
import { JobError, type JobHandler, type JobOutput } from '../job-handlers.js';
import {
  asJobError,
  hasInput,
  parsePayload,
  privateSlicesFor,
  requireInput,
  trainingWorkers,
} from './study-support.js';

export const TRAIN_ROUND_KIND = 'train-round';

/** Whether payload.data asks for anything but the site's real training slices. */
export function mixesData(data: TrainRoundPayload['data']): boolean {
  return data !== undefined && (data.both || data.syntheticShare > 0 || data.totalSlices !== undefined);
}

/** Where a round's steps sit in the study's schedule: round·localSteps of rounds·localSteps. */
export function roundSchedule(payload: Pick<TrainRoundPayload, 'round' | 'rounds' | 'localSteps'>): {
  stepOffset: number;
  totalSteps: number;
} {
  const rounds = payload.rounds ?? payload.round + 1;
  return { stepOffset: payload.round * payload.localSteps, totalSteps: rounds * payload.localSteps };
}

export const trainRoundHandler: JobHandler = async (ctx) => {
  const payload = parsePayload(ctx, trainRoundPayloadSchema);
  const { model } = payload;
  const mix = mixesData(payload.data);
  if (mix && model.task !== 'segmenter') {
    throw new JobError(
      'bad_payload',
      'train-round: generators train on real slices only (no data mix)',
      false,
    );
  }
  if (mix && (payload.data!.syntheticShare > 0 || payload.data!.both)) requireInput(ctx, 'synthetic-pool');
  if (payload.rounds !== undefined && payload.round >= payload.rounds) {
    throw new JobError(
      'bad_payload',
      `train-round: round ${payload.round} of a ${payload.rounds}-round study`,
      false,
    );
  }
  if (hasInput(ctx, 'ema') && !hasInput(ctx, 'global-weights')) {
    throw new JobError('bad_payload', "train-round: an 'ema' input without 'global-weights'", false);
  }
  const started = performance.now();
  const jobs = await import('@fedsynth/common/ml/jobs/index');
  const files = await import('@fedsynth/common/ml/jobs/job-files');
  const architecture = await jobs.studyModelArchitecture(model);
  const size = files.modelInputSize(architecture);

  // Inputs first: a missing or corrupt input fails before the long parts.
  ctx.progress(0, { stage: 'download' });
  const initialWeights = hasInput(ctx, 'global-weights')
    ? await readFile(await ctx.download('global-weights'))
    : undefined;
  const initialEma = hasInput(ctx, 'ema') ? await readFile(await ctx.download('ema')) : undefined;

  const real = await privateSlicesFor(ctx, size, 0.02, 0.2);
  let data = real;
  if (mix) {
    ctx.progress(0.2, { stage: 'mix' });
    const d = payload.data!;
    const pool = hasInput(ctx, 'synthetic-pool') ? await ctx.download('synthetic-pool') : undefined;
    try {
      const built = await jobs.buildTrainingMix({
        real,
        pool,
        syntheticShare: d.syntheticShare,
        totalSlices: d.totalSlices,
        both: d.both,
        seed: payload.seed,
        out: path.join(ctx.workDir, 'train-mix.fss'),
      });
      ctx.log.info(
        `job ${ctx.job.id}: training mix of ${built.real} real + ${built.synthetic} synthetic slices`,
      );
      data = built.out;
    } catch (error) {
      const failure = asJobError(ctx, 'train-round data mix', error, real);
      if (failure instanceof JobError) throw failure;
      throw new JobError('bad_data_mix', `train-round data mix: ${(failure as Error).message}`, false);
    }
  }
  const trainSet = await files.trainingSetOf(data).catch((error: unknown) => {
    throw asJobError(ctx, 'train-round training set', error, real);
  });
  if (trainSet.trainSlices === 0) {
    throw new JobError('no_training_data', `the site has no labelled training slices of ${size}²`, false);
  }

  const out = path.join(ctx.workDir, 'train');
  const common = {
    data,
    out,
    steps: payload.localSteps,
    batchSize: payload.batchSize,
    workers: trainingWorkers(payload.batchSize),
    // Every round draws other batches (and augmentations) than the last.
    seed: payload.seed + payload.round,
    checkpointEvery: Math.max(50, Math.ceil(payload.localSteps / 4)),
    // A job restarted under the same attempt (agent restart) continues its round from the checkpoint.
    resume: true,
    signal: ctx.signal,
    ...(payload.maxSeconds !== undefined && { maxSeconds: payload.maxSeconds }),
    ...(initialWeights && { initialWeights }),
    ...(initialEma && { initialEma }),
    // Schedules (ProGAN growth, EMA ramp-up, LR warm-up/poly) continue across rounds instead of restarting.
    ...(payload.rounds !== undefined && { schedule: roundSchedule(payload) }),
    log: (line: string) => ctx.log.debug(`job ${ctx.job.id}: ${line}`),
    onProgress: (p: { step: number; steps: number; loss: number }) =>
      ctx.progress(0.22 + (0.7 * p.step) / p.steps, {
        stage: 'train',
        metrics: { step: p.step, steps: p.steps, loss: p.loss },
      }),
  };
  ctx.progress(0.22, { stage: 'train' });
  let weightsFile: string;
  let emaFile: string | undefined;
  let trained: { steps: number; finalLoss: number; cancelled: boolean };
  try {
    if (model.task === 'segmenter') {
      const { card, dir } = await jobs.trainSegmenter({
        ...common,
        model: model.model,
        profile: model.profile,
      });
      weightsFile = path.join(dir, jobs.MODEL_WEIGHTS_FILE);
      trained = card;
    } else {
      const { card, dir } = await jobs.trainGenerator({
        ...common,
        model: model.model,
        profile: model.profile,
      });
      weightsFile = path.join(dir, jobs.TRAINING_WEIGHTS_FILE);
      if (card.ema) emaFile = path.join(dir, jobs.GENERATOR_WEIGHTS_FILE);
      trained = card;
    }
  } catch (error) {
    throw asJobError(ctx, 'train-round global weights', error, real);
  }
  // Cancelled by the agent (lease lost, stopping): nothing to report. A spent time budget still uploads.
  ctx.signal.throwIfAborted();

  const meta = {
    studyId: payload.studyId,
    round: payload.round,
    model: model.model,
    task: model.task,
    profile: model.profile,
    steps: trained.steps,
  };
  const outputs: JobOutput[] = [];
  const uploads: Array<[role: string, file: string]> = [['weights', weightsFile]];
  if (emaFile) uploads.push(['ema', emaFile]);
  for (const [i, [role, file]] of uploads.entries()) {
    const share = 0.06 / uploads.length;
    outputs.push(
      await ctx.upload(
        { file },
        {
          role,
          kind: 'round-update',
          meta,
          onProgress: (p) =>
            ctx.progress(0.92 + share * (i + (p.bytesTotal ? p.bytesDone / p.bytesTotal : 1)), {
              stage: 'upload',
            }),
        },
      ),
    );
  }
  ctx.progress(1, { stage: 'done' });
  return {
    outputs,
    metrics: {
      trainSlices: trainSet.trainSlices,
      steps: trained.steps,
      ...(Number.isFinite(trained.finalLoss) && { finalLoss: trained.finalLoss }),
      seconds: (performance.now() - started) / 1000,
    },
  };
};
