// 'evaluate': measure a segmenter on the site's held-out real test subjects and answer with metrics only. The
// summary numbers subjects 1..n in the store's order (the same subject gets the same number in every evaluation
// of the site, so models can be compared per subject); subject ids, paths and pixels never leave the site.
import { readFile, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import {
  type EvaluationSummary,
  type LabelScores,
  evaluatePayloadSchema,
  evaluationSummarySchema,
} from '@fedsynth/common/protocol/job-payloads';
import { JobError, type JobHandler } from '../job-handlers.js';
import { asJobError, parsePayload, privateSlicesFor, requireInput } from './study-support.js';

export const EVALUATE_KIND = 'evaluate';

interface Scores {
  labels: Record<'ET' | 'ED' | 'NCR', { dice: number; hd95: number }>;
  regions: Record<'WT' | 'TC' | 'ETr', { dice: number; hd95: number }>;
}

const finite = (v: number): number | null => (Number.isFinite(v) ? v : null);

/** One metric per label and region, in the protocol's names (ET is the ET label, which is also the ET region). */
export function labelScores(scores: Scores, metric: 'dice' | 'hd95'): LabelScores {
  return {
    NCR: finite(scores.labels.NCR[metric]),
    ED: finite(scores.labels.ED[metric]),
    ET: finite(scores.labels.ET[metric]),
    WT: finite(scores.regions.WT[metric]),
    TC: finite(scores.regions.TC[metric]),
  };
}

export const evaluateHandler: JobHandler = async (ctx) => {
  const payload = parsePayload(ctx, evaluatePayloadSchema);
  requireInput(ctx, 'segmenter');
  const started = performance.now();
  ctx.progress(0, { stage: 'download' });
  const downloaded = await ctx.download('segmenter');
  const jobs = await import('@fedsynth/common/ml/jobs/index');
  const files = await import('@fedsynth/common/ml/jobs/job-files');
  const { decodeWeights } = await import('@fedsynth/common/ml/weights/index');
  let size: number;
  try {
    const { architecture } = decodeWeights(await readFile(downloaded), 'segmenter input').manifest;
    if (architecture.name !== 'unet' && architecture.name !== 'swin') {
      throw new JobError(
        'weights_mismatch',
        `evaluate: the input is a ${architecture.name}, not a segmenter`,
      );
    }
    size = files.modelInputSize(architecture);
  } catch (error) {
    if (error instanceof JobError) throw error;
    throw new JobError('bad_input', `evaluate: ${(error as Error).message}`, false);
  }
  const store = await privateSlicesFor(ctx, size, 0.02, 0.3);
  ctx.signal.throwIfAborted();
  // evaluateSegmenterModel reads `*.weights` files; the blob store names files by hash.
  const weightsFile = path.join(ctx.workDir, 'segmenter.weights');
  await rm(weightsFile, { force: true });
  await symlink(downloaded, weightsFile);
  ctx.progress(0.3, { stage: 'evaluate' });
  let result: Awaited<ReturnType<typeof jobs.evaluateSegmenterModel>>;
  try {
    result = await jobs.evaluateSegmenterModel({
      model: weightsFile,
      data: store,
      split: 'test',
      workDir: ctx.workDir,
      log: (line) => ctx.log.debug(`job ${ctx.job.id}: ${line}`),
      onProgress: (done, total) =>
        ctx.progress(0.3 + (0.7 * done) / Math.max(1, total), {
          stage: 'evaluate',
          metrics: { subjectsDone: done, subjectsTotal: total },
        }),
    });
  } catch (error) {
    if (/no labelled test subjects/.test((error as Error)?.message ?? '')) {
      throw new JobError('no_test_data', 'the site has no labelled held-out test subjects', false);
    }
    throw asJobError(ctx, 'evaluate segmenter', error, store);
  }
  ctx.signal.throwIfAborted();

  const { SliceStoreReader } = await import('@fedsynth/common/slices/index');
  const reader = await SliceStoreReader.open(store);
  const slicesOf = new Map(reader.meta.subjects.map((s) => [s.id, s.count]));
  await reader.close();
  const summary: EvaluationSummary = {
    subjects: result.perSubject.length,
    slices: result.perSubject.reduce((sum, s) => sum + (slicesOf.get(s.subject) ?? 0), 0),
    mean: { dice: labelScores(result.summary.mean, 'dice'), hd95: labelScores(result.summary.mean, 'hd95') },
    perSubject: result.perSubject.map((s, i) => ({
      subject: i + 1,
      dice: labelScores(
        {
          labels: s.labels,
          regions: s.regions,
        },
        'dice',
      ),
      hd95: labelScores({ labels: s.labels, regions: s.regions }, 'hd95'),
    })),
  };
  // Our own answer must fit the contract (and so carries nothing but numbers).
  const checked = evaluationSummarySchema.safeParse(summary);
  if (!checked.success) {
    throw new JobError('bad_result', `evaluate: summary does not fit the contract: ${checked.error.message}`);
  }
  const metrics: Record<string, number> = { subjects: summary.subjects, slices: summary.slices };
  for (const [key, value] of Object.entries(summary.mean.dice))
    if (value !== null) metrics[`dice${key}`] = value;
  metrics.seconds = (performance.now() - started) / 1000;
  ctx.log.info(`job ${ctx.job.id}: evaluated '${payload.label}' on ${summary.subjects} test subject(s)`);
  ctx.progress(1, { stage: 'done' });
  return { outputs: [], metrics, summary: checked.data as Record<string, unknown> };
};
