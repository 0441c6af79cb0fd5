// 'audit': the memorization audit on this site (DESIGN.md step 6). Downloads the candidate pool, scores every
// candidate against the site's private training slices (and their mirrors) in a worker thread, uploads only the
// scores (AuditScores JSON), and keeps a local record of each flagged candidate's nearest private slice for the
// review page (`fedsynth site review`): that record never leaves the site.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import {
  isAuditReferenceError,
  localAuditRecord,
  runAuditInWorker,
  writeLocalAuditRecord,
  type AuditResult,
} from '@fedsynth/common/audit/index';
import {
  auditPayloadSchema,
  auditScoresSchema,
  type AuditScores,
} from '@fedsynth/common/protocol/job-payloads';
import { SliceStoreReader } from '@fedsynth/common/slices/index';
import { JobError, type JobContext, type JobHandler } from '../job-handlers.js';
import { readSiteState } from '../site-state.js';

export const AUDIT_KIND = 'audit';

/** The agent's state dir from a job's scratch dir (<state>/work/<job id>). */
export function stateDirOfWorkDir(workDir: string): string {
  return path.resolve(workDir, '..', '..');
}

/** Fallback when the context offers no privateSlices: a slice store of the right size in the site's data folder. */
async function privateStoreFromDataFolder(stateDir: string, size: number): Promise<string> {
  const { dataDir } = await readSiteState(stateDir);
  if (dataDir.endsWith('.fss')) return dataDir;
  for (const name of (await readdir(dataDir)).filter((n) => n.endsWith('.fss')).sort()) {
    const reader = await SliceStoreReader.open(path.join(dataDir, name));
    const fits = reader.meta.size === size;
    await reader.close();
    if (fits) return path.join(dataDir, name);
  }
  throw new JobError('no_private_slices', `no ${size}² slice store in ${dataDir} to audit against`);
}

export function toAuditScores(result: AuditResult): AuditScores {
  return auditScoresSchema.parse({
    format: 'fedsynth-audit-scores',
    version: 1,
    scores: result.scores,
    reference: result.reference,
    referenceKind: result.referenceKind,
    threshold: result.threshold,
    flagged: result.flagged,
  });
}

export function createAuditHandler(options: { stateDir?: (ctx: JobContext) => string } = {}): JobHandler {
  return async (ctx) => {
    const parsed = auditPayloadSchema.safeParse(ctx.job.payload);
    if (!parsed.success) throw new JobError('bad_payload', `audit payload: ${parsed.error.message}`, false);
    const payload = parsed.data;
    const stateDir = options.stateDir?.(ctx) ?? stateDirOfWorkDir(ctx.workDir);

    ctx.progress(0, { stage: 'download', message: 'audit-pool' });
    const candidates = await ctx.download('audit-pool');
    let size: number;
    try {
      const reader = await SliceStoreReader.open(candidates);
      size = reader.meta.size;
      await reader.close();
    } catch (error) {
      throw new JobError('bad_input', `audit-pool: ${(error as Error).message}`, false);
    }
    ctx.progress(0.05, { stage: 'private-slices' });
    const privateStore = ctx.privateSlices
      ? await ctx.privateSlices(size)
      : await privateStoreFromDataFolder(stateDir, size);

    const weights = { load: [0.05, 0.1], reference: [0.1, 0.3], candidates: [0.3, 0.95] } as const;
    let result: AuditResult;
    try {
      result = await runAuditInWorker({
        candidates,
        privateStore,
        margin: payload.margin,
        signal: ctx.signal,
        onProgress: (p) => {
          const [a, b] = weights[p.stage];
          ctx.progress(a + ((b - a) * p.done) / Math.max(1, p.total), {
            stage: p.stage,
            metrics: { done: p.done, total: p.total },
          });
        },
      });
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      // No unseen reference (one training subject, none held out): its own code; the message names no path.
      if (isAuditReferenceError(error)) throw new JobError(error.code, error.message, false);
      throw new JobError('audit_failed', (error as Error).message, false);
    }

    await writeLocalAuditRecord(
      stateDir,
      localAuditRecord(result, {
        auditId: payload.auditId,
        studyId: payload.studyId,
        candidates,
        privateStore,
      }),
    );
    const scores = toAuditScores(result);
    const output = await ctx.upload(
      { buffer: Buffer.from(JSON.stringify(scores)) },
      { role: 'scores', kind: 'job-output', meta: { auditId: payload.auditId } },
    );
    ctx.progress(1, { stage: 'done' });
    return {
      outputs: [output],
      metrics: {
        candidates: result.scores.length,
        flagged: result.flagged.length,
        threshold: result.threshold,
      },
    };
  };
}

export const auditHandler = createAuditHandler();
