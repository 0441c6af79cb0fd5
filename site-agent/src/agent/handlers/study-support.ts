// What the study handlers ('train-round', 'sample', 'evaluate') share: payload validation into bad_payload, the
// site's private slices with progress, optional inputs, and turning ML errors into job failure codes.
import os from 'node:os';
import type * as z from 'zod';
import { JobError, type JobContext } from '../job-handlers.js';
import { privateDataError } from '../private-slices.js';
import { scrubPrivateDetails } from '../scrub.js';

export function parsePayload<S extends z.ZodType>(ctx: JobContext, schema: S): z.output<S> {
  const parsed = schema.safeParse(ctx.job.payload);
  if (!parsed.success) {
    throw new JobError('bad_payload', `${ctx.job.kind} payload: ${parsed.error.message}`, false);
  }
  return parsed.data;
}

export function hasInput(ctx: JobContext, role: string): boolean {
  return (ctx.job.inputs ?? []).some((i) => i.role === role);
}

export function requireInput(ctx: JobContext, role: string): void {
  if (!hasInput(ctx, role)) {
    throw new JobError('missing_input', `${ctx.job.kind} needs an input with role '${role}'`, false);
  }
}

/** The private slice store of `size`², reporting slicing progress as `stage: 'slicing'` within [from, to]. */
export async function privateSlicesFor(
  ctx: JobContext,
  size: number,
  from: number,
  to: number,
): Promise<string> {
  if (!ctx.privateSlices) throw new JobError('no_private_data', 'this agent has no private data', false);
  const building = ctx.privateSlices(size, {
    onProgress: ({ done, total }) =>
      ctx.progress(from + ((to - from) * done) / Math.max(1, total), {
        stage: 'slicing',
        metrics: { casesDone: done, casesTotal: total },
      }),
  });
  // An abort returns at once; a build in progress goes on (the next job needs the same store).
  building.catch(() => undefined);
  const aborted = new Promise<never>((_, reject) => {
    const fail = () => reject(ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted'));
    if (ctx.signal.aborted) fail();
    else ctx.signal.addEventListener('abort', fail, { once: true });
  });
  aborted.catch(() => undefined);
  try {
    return await Promise.race([building, aborted]);
  } catch (error) {
    ctx.signal.throwIfAborted();
    throw privateDataError(ctx.log, error);
  }
}

/** Training worker threads: at most 2 (the all-reduce pays off from there on CPUs), the cores, the batch. */
export function trainingWorkers(batchSize: number): number {
  return Math.max(1, Math.min(2, os.availableParallelism(), batchSize));
}

/** A weights blob that does not fit the model (a WeightsMismatchError, also as a training worker's cause). */
export function isWeightsMismatch(error: unknown): boolean {
  for (let e = error as { name?: string; cause?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    if (e.name === 'WeightsMismatchError') return true;
    e = e.cause as typeof e;
  }
  return false;
}

/**
 * Errors that describe a broken slice store (their text names its path): private unless they name a file other
 * than `privateFile` (then it is one of the job's inputs, e.g. the synthetic pool).
 */
function namesPrivateFile(error: unknown, privateFile: string | undefined): boolean {
  type Named = { name?: string; file?: unknown; cause?: unknown };
  for (let e = error as Named | undefined, depth = 0; e && depth < 5; depth++) {
    if (e.name === 'SliceStoreFormatError' || e.name === 'AuditInputError') {
      return privateFile === undefined || typeof e.file !== 'string' || e.file === privateFile;
    }
    e = e.cause as Named | undefined;
  }
  return false;
}

/**
 * ML failures as job failures. A weights mismatch is the coordinator's input (not retryable); an error about
 * `privateFile` (a store of the site's private slices) or a broken slice store becomes 'private_data' with a fixed
 * text; anything else keeps its text without paths or subject ids. Details are logged on the site.
 */
export function asJobError(ctx: JobContext, what: string, error: unknown, privateFile?: string): unknown {
  if (error instanceof JobError || ctx.signal.aborted) return error;
  const message = (error as Error)?.message ?? String(error);
  if (isWeightsMismatch(error)) {
    return new JobError('weights_mismatch', `${what}: ${scrubPrivateDetails(message)}`, false);
  }
  if (namesPrivateFile(error, privateFile) || (privateFile !== undefined && message.includes(privateFile))) {
    return privateDataError(ctx.log, error);
  }
  if (error instanceof Error) {
    ctx.log.error(`job ${ctx.job.id}: ${what}: ${message}`);
    const scrubbed = new Error(scrubPrivateDetails(message, privateFile ? [privateFile] : []));
    scrubbed.name = error.name;
    return scrubbed;
  }
  return error;
}
