// 'sample': draw synthetic slices from a study's generator. The generator is built from the 'weights' input,
// preferring the 'ema' input (the averaged generator a GAN is sampled from). Before anything leaves the site, the
// local memorization pre-check (DESIGN.md step 3) scores the n drawn slices against the site's private training
// slices and their mirrors with the audit (common/src/audit, in a worker); samples above the site's threshold are
// withheld and only the rest is uploaded as 'samples'. Only counts are reported.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AuditProgress } from '@fedsynth/common/audit/index';
import { samplePayloadSchema } from '@fedsynth/common/protocol/job-payloads';
import { JobError, type JobContext, type JobHandler } from '../job-handlers.js';
import { asJobError, hasInput, parsePayload, privateSlicesFor, requireInput } from './study-support.js';

export const SAMPLE_KIND = 'sample';

/** The pre-check's margin over the site's reference when none is configured (the `fedsynth audit` default). */
export const DEFAULT_PRECHECK_MARGIN = 0.05;
/** Environment variable a site sets to choose its own pre-check margin in [0, 1]. */
export const PRECHECK_MARGIN_ENV = 'FEDSYNTH_PRECHECK_MARGIN';
/** Slices copied per read/write when writing the kept samples. */
const COPY_CHUNK = 256;

export function precheckMarginFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const text = env[PRECHECK_MARGIN_ENV];
  if (text === undefined || text.trim() === '') return DEFAULT_PRECHECK_MARGIN;
  const value = Number(text);
  if (!(value >= 0 && value <= 1)) {
    throw new JobError('bad_site_config', `${PRECHECK_MARGIN_ENV} must be a number in [0, 1]`, false);
  }
  return value;
}

export interface PrecheckOptions {
  /** the drawn samples (slice store) */
  drawn: string;
  /** the site's private slices of the samples' size */
  privateStore: string;
  margin: number;
  /** where the kept samples are written (only when some are withheld; else `drawn` is what to upload) */
  out: string;
  signal?: AbortSignal;
  onProgress?: (progress: AuditProgress) => void;
}

export interface PrecheckResult {
  /** the store to upload: `drawn` when nothing was withheld */
  file: string;
  drawn: number;
  kept: number;
  /** indices (in draw order) of the withheld samples: stay on the site */
  withheld: number[];
  threshold: number;
}

/**
 * The local memorization pre-check: scores every drawn sample against the site's private training slices (max
 * Pearson, mirrors, shifts; threshold = the site's train→held-out reference + margin, as the audit) and writes the
 * samples at or below the threshold. Fails with 'precheck_withheld_all' when nothing is left.
 */
export async function precheckSamples(options: PrecheckOptions): Promise<PrecheckResult> {
  const { runAuditInWorker } = await import('@fedsynth/common/audit/index');
  const { SliceStoreReader, SliceStoreWriter } = await import('@fedsynth/common/slices/index');
  const audit = await runAuditInWorker({
    candidates: options.drawn,
    privateStore: options.privateStore,
    margin: options.margin,
    signal: options.signal,
    onProgress: options.onProgress,
  });
  const drawn = audit.scores.length;
  const withheld = [...audit.flagged].sort((a, b) => a - b);
  const result = { drawn, withheld, kept: drawn - withheld.length, threshold: audit.threshold };
  if (result.kept === 0) {
    throw new JobError(
      'precheck_withheld_all',
      `the local memorization pre-check withheld all ${drawn} samples: none is uploaded`,
      false,
    );
  }
  if (withheld.length === 0) return { ...result, file: options.drawn };
  const reader = await SliceStoreReader.open(options.drawn);
  try {
    const out = options.out;
    const skip = new Set(withheld);
    const keep = Array.from({ length: reader.count }, (_, i) => i).filter((i) => !skip.has(i));
    const {
      count: _c,
      sliceBytes: _b,
      dataOffset: _o,
      subjects,
      format: _f,
      version: _v,
      ...init
    } = reader.meta;
    const writer = await SliceStoreWriter.create(out, init);
    const base = subjects[0]?.id ?? 'synthetic';
    try {
      // The writer takes a subject's slices at once: consecutive subjects of at most COPY_CHUNK slices each.
      for (let start = 0; start < keep.length; start += COPY_CHUNK) {
        const chunk = keep.slice(start, start + COPY_CHUNK);
        await writer.addSubject(
          {
            id: start === 0 ? base : `${base}#${start / COPY_CHUNK + 1}`,
            split: 'train',
            labelled: true,
            // the draw index of each kept sample
            z: chunk,
            sourceDims: [init.size, init.size, drawn],
            reference: {},
          },
          await reader.readIndices(chunk),
        );
      }
      await writer.close();
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return { ...result, file: out };
  } finally {
    await reader.close();
  }
}

export interface SampleHandlerOptions {
  /** the pre-check's margin (default: FEDSYNTH_PRECHECK_MARGIN, else DEFAULT_PRECHECK_MARGIN) */
  precheckMargin?: number;
}

async function runPrecheck(
  ctx: JobContext,
  drawn: string,
  size: number,
  margin: number,
): Promise<PrecheckResult> {
  const privateStore = await privateSlicesFor(ctx, size, 0.6, 0.62);
  const weights = { load: [0.62, 0.66], reference: [0.66, 0.72], candidates: [0.72, 0.85] } as const;
  try {
    return await precheckSamples({
      drawn,
      privateStore,
      margin,
      out: path.join(ctx.workDir, 'samples.fss'),
      signal: ctx.signal,
      onProgress: (p) => {
        const [a, b] = weights[p.stage];
        ctx.progress(a + ((b - a) * p.done) / Math.max(1, p.total), {
          stage: 'precheck',
          metrics: { done: p.done, total: p.total },
        });
      },
    });
  } catch (error) {
    if (error instanceof JobError || ctx.signal.aborted) throw error;
    const { isAuditReferenceError } = await import('@fedsynth/common/audit/index');
    // A site with one training subject and none held out cannot pre-check: say so (the message names no path).
    if (isAuditReferenceError(error)) throw new JobError(error.code, error.message, false);
    // The audit's errors name the private store (and its reason, e.g. no held-out slices): detail stays here.
    ctx.log.error(`job ${ctx.job.id}: memorization pre-check: ${(error as Error)?.message ?? error}`);
    throw new JobError(
      'precheck_failed',
      'the local memorization pre-check could not run (details in the site log)',
      false,
    );
  }
}

export function createSampleHandler(options: SampleHandlerOptions = {}): JobHandler {
  return (ctx) => sample(ctx, options);
}

async function sample(ctx: JobContext, options: SampleHandlerOptions) {
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
  const margin = options.precheckMargin ?? precheckMarginFromEnv();
  const out = path.join(ctx.workDir, 'drawn.fss');
  let count: number;
  let size: number;
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
        ctx.progress(0.05 + (0.55 * done) / Math.max(1, total), {
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
    size = result.size;
  } catch (error) {
    throw asJobError(ctx, 'sample weights', error);
  }
  ctx.signal.throwIfAborted();
  const checked = await runPrecheck(ctx, out, size, margin);
  if (checked.withheld.length > 0) {
    ctx.log.warn(
      `job ${ctx.job.id}: the memorization pre-check withheld ${checked.withheld.length} of ${count} samples ` +
        `(threshold ${checked.threshold.toFixed(4)}; draw indices ${checked.withheld.join(', ')})`,
    );
  }
  ctx.signal.throwIfAborted();
  const output = await ctx.upload(
    { file: checked.file },
    {
      role: 'samples',
      kind: 'samples',
      meta: {
        studyId: payload.studyId,
        generator: model.model,
        profile: model.profile,
        seed: payload.seed,
        count: checked.kept,
        drawn: count,
        truncationPsi: payload.truncationPsi,
        ddimSteps: payload.ddimSteps,
      },
      onProgress: (p) =>
        ctx.progress(0.85 + 0.15 * (p.bytesTotal ? p.bytesDone / p.bytesTotal : 1), { stage: 'upload' }),
    },
  );
  ctx.progress(1, { stage: 'done' });
  return {
    outputs: [output],
    metrics: {
      // uploaded samples (≤ the payload's n): the orchestrator accepts count ≤ n
      count: checked.kept,
      drawn: count,
      withheldByPrecheck: checked.withheld.length,
      seconds: (performance.now() - started) / 1000,
    },
  };
}

export const sampleHandler = createSampleHandler();
