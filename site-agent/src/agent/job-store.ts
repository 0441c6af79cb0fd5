// Jobs in flight, persisted in `<state>/jobs/<jobId>.json` so that a restarted agent re-reports them in its hello
// and resumes them: the attempt, how far it got, its uploads (transfer ids, so an upload resumes from the last
// acknowledged chunk; committed blobs are not sent again) and a computed result or failure not yet acknowledged.
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  type JobFailed,
  type JobResult,
  jobSchema,
  transferIdSchema,
  transferKindSchema,
} from '@fedsynth/common/protocol/index';
import * as z from 'zod';
import { writeJsonFile } from './site-state.js';

export const jobRecordSchema = z.object({
  version: z.literal(1),
  job: jobSchema,
  /** accepting: job:accept sent; running: the handler runs; reporting / failing: result / failure to deliver */
  state: z.enum(['accepting', 'running', 'reporting', 'failing']),
  uploads: z.record(
    z.string(),
    z.object({
      transferId: transferIdSchema,
      sha256: z.string(),
      size: z.number().int().nonnegative(),
      kind: transferKindSchema,
      committed: z.boolean(),
    }),
  ),
  result: z.custom<JobResult>().optional(),
  failure: z.custom<JobFailed>().optional(),
  updatedAt: z.number(),
});
export type JobRecord = z.output<typeof jobRecordSchema>;

/** Persisted job records; writes of one job are serialized (a handler may upload outputs in parallel). */
export class JobStore {
  private readonly chains = new Map<string, Promise<void>>();

  constructor(readonly dir: string) {}

  private file(jobId: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(jobId) || jobId.includes('..')) {
      throw new TypeError(`bad job id ${jobId}`);
    }
    return path.join(this.dir, `${jobId}.json`);
  }

  /** Every readable record; unreadable files are removed (their jobs cannot be resumed). */
  async list(): Promise<JobRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const out: JobRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      const file = path.join(this.dir, name);
      try {
        out.push(jobRecordSchema.parse(JSON.parse(await readFile(file, 'utf8'))));
      } catch {
        await rm(file, { force: true });
      }
    }
    return out;
  }

  save(record: JobRecord): Promise<void> {
    return this.serial(record.job.id, () =>
      writeJsonFile(this.file(record.job.id), { ...record, updatedAt: Date.now() }),
    );
  }

  remove(jobId: string): Promise<void> {
    return this.serial(jobId, () => rm(this.file(jobId), { force: true }));
  }

  private serial(jobId: string, work: () => Promise<void>): Promise<void> {
    const prev = this.chains.get(jobId) ?? Promise.resolve();
    const next = prev.then(work, work);
    const tail = next.catch(() => undefined);
    this.chains.set(jobId, tail);
    void tail.then(() => {
      if (this.chains.get(jobId) === tail) this.chains.delete(jobId);
    });
    return next;
  }
}
