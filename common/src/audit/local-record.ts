// What a site keeps on its own disk after an audit (never uploaded): for each flagged candidate, its nearest
// private slice, so the hospital's staff can look at both side by side (`fedsynth site review`).
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import type { AuditResult } from './audit.js';

export const localAuditRecordSchema = z.strictObject({
  format: z.literal('fedsynth-audit-local'),
  version: z.literal(1),
  auditId: z.string().min(1),
  studyId: z.string().optional(),
  createdAt: z.string(),
  /** slice store of the candidates (the downloaded pool, or the file of a local run) */
  candidates: z.string(),
  /** the site's private slice store the candidates were scored against */
  privateStore: z.string(),
  candidateCount: z.number().int().min(0),
  threshold: z.number(),
  margin: z.number(),
  referenceQuantile: z.number(),
  flagged: z.array(
    z.strictObject({
      candidate: z.number().int().min(0),
      score: z.number(),
      privateIndex: z.number().int().min(0),
      mirrored: z.boolean(),
      dx: z.number().int(),
      dy: z.number().int(),
    }),
  ),
});
export type LocalAuditRecord = z.output<typeof localAuditRecordSchema>;

export function localAuditRecord(
  result: AuditResult,
  info: { auditId: string; studyId?: string; candidates: string; privateStore: string },
): LocalAuditRecord {
  return {
    format: 'fedsynth-audit-local',
    version: 1,
    auditId: info.auditId,
    ...(info.studyId !== undefined ? { studyId: info.studyId } : {}),
    createdAt: new Date().toISOString(),
    candidates: path.resolve(info.candidates),
    privateStore: path.resolve(info.privateStore),
    candidateCount: result.scores.length,
    threshold: result.threshold,
    margin: result.settings.margin,
    referenceQuantile: result.settings.quantile,
    flagged: result.flagged.map((candidate) => {
      const m = result.matches[candidate]!;
      return {
        candidate,
        score: m.score,
        privateIndex: m.privateIndex,
        mirrored: m.mirrored,
        dx: m.dx,
        dy: m.dy,
      };
    }),
  };
}

/** Audit records live in `<state>/audits/<auditId>.json` (0600). */
export function localAuditDir(stateDir: string): string {
  return path.join(stateDir, 'audits');
}

export async function writeLocalAuditRecord(stateDir: string, record: LocalAuditRecord): Promise<string> {
  const dir = localAuditDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const safe = record.auditId.replace(/[^A-Za-z0-9._-]/g, '_');
  const file = path.join(dir, `${safe}.json`);
  await writeFile(`${file}.partial`, JSON.stringify(record, null, 2) + '\n', { mode: 0o600 });
  await rename(`${file}.partial`, file);
  return file;
}

export async function readLocalAuditRecord(file: string): Promise<LocalAuditRecord> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: not a readable audit record (${(error as Error).message})`);
  }
  const parsed = localAuditRecordSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${file}: not a fedsynth audit record (${parsed.error.message})`);
  return parsed.data;
}

/** Every audit record of a state directory, newest first. */
export async function readLocalAuditRecords(stateDir: string): Promise<LocalAuditRecord[]> {
  const dir = localAuditDir(stateDir);
  const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [] as string[];
    throw error;
  });
  const records = await Promise.all(
    names.filter((n) => n.endsWith('.json')).map((n) => readLocalAuditRecord(path.join(dir, n))),
  );
  return records.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}
