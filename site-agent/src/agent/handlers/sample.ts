// 'sample': draw synthetic slices from a study's generator. The generator is built from the 'weights' input,
// preferring the 'ema' input (the averaged generator a GAN is sampled from); the n slices are written as a slice
// store and uploaded as 'samples'. No private data is read.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { samplePayloadSchema } from '@fedsynth/common/protocol/job-payloads';
import { JobError, type JobHandler } from '../job-handlers.js';
import { asJobError, hasInput, parsePayload, requireInput } from './study-support.js';

export const SAMPLE_KIND = 'sample';

export const sampleHandler: JobHandler = async (ctx) => {
  const payload = parsePayload(ctx, samplePayloadSchema);
  const { model } = payload;
  if (model.task !== 'generator') {
    throw new JobError('bad_payload', `sample: ${model.model} is not a generator`, false);
  }
  requireInput(ctx, 'weights');
  const started = performance.now();
  ctx.progress(0, { stage: 'download' });
  const weights = await readFile(await ctx.download('weights'));
  const ema = hasInput(ctx, 'ema') ? await readFile(await ctx.download('ema')) : undefined;
  const jobs = await import('@fedsynth/common/ml/jobs/index');
  const out = path.join(ctx.workDir, 'samples.fss');
  let count: number;
  try {
    const dir = await jobs.generatorFolderFromWeights(path.join(ctx.workDir, 'generator'), weights, ema);
    ctx.signal.throwIfAborted();
    ctx.progress(0.05, { stage: 'sample' });
    const result = await jobs.sampleFromGenerator({
      model: dir,
      n: payload.n,
      out,
      seed: payload.seed,
      truncationPsi: payload.truncationPsi,
      ddimSteps: payload.ddimSteps,
      grid: false,
      log: (line) => ctx.log.debug(`job ${ctx.job.id}: ${line}`),
      onProgress: (done, total) =>
        ctx.progress(0.05 + (0.8 * done) / Math.max(1, total), {
          stage: 'sample',
          metrics: { done, total },
        }),
    });
    if (result.architecture.name !== model.model) {
      throw new JobError(
        'weights_mismatch',
        `sample: the weights are a ${result.architecture.name} generator, the payload says ${model.model}`,
        false,
      );
    }
    count = result.count;
  } catch (error) {
    throw asJobError(ctx, 'sample weights', error);
  }
  ctx.signal.throwIfAborted();
  const output = await ctx.upload(
    { file: out },
    {
      role: 'samples',
      kind: 'samples',
      meta: {
        studyId: payload.studyId,
        generator: model.model,
        profile: model.profile,
        seed: payload.seed,
        count,
        truncationPsi: payload.truncationPsi,
        ddimSteps: payload.ddimSteps,
      },
      onProgress: (p) =>
        ctx.progress(0.85 + 0.15 * (p.bytesTotal ? p.bytesDone / p.bytesTotal : 1), { stage: 'upload' }),
    },
  );
  ctx.progress(1, { stage: 'done' });
  return { outputs: [output], metrics: { count, seconds: (performance.now() - started) / 1000 } };
};
