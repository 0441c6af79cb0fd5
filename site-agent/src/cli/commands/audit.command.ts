// `fedsynth audit`: the memorization audit run locally (the same maths as the site's 'audit' job), and
// `fedsynth site review` (registered under `site`): the local page of flagged candidates beside their nearest
// private slices.
import path from 'node:path';
import type { Command } from 'commander';
import { StderrProgress } from '@fedsynth/common/util/progress';
import { UsageError } from '../cli-errors.js';

interface AuditOptions {
  candidates: string;
  private: string;
  margin: string;
  topK?: string;
  maxShift?: string;
  review?: string;
  json?: boolean;
}

function parseNumber(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!(n >= min && n <= max))
    throw new UsageError(`${name} must be a number in [${min}, ${max}], got "${value}"`);
  return n;
}

export function registerAuditCommand(program: Command): void {
  program
    .command('audit')
    .description(
      'memorization audit: score candidate slices against private training slices (max Pearson, mirrors, shifts)',
    )
    .requiredOption('--candidates <file>', 'slice store of candidate (synthetic) slices (.fss)')
    .requiredOption(
      '--private <path>',
      "private slices: a slice store (.fss) or a folder of BraTS cases (sliced with the candidates' size)",
    )
    .option(
      '--margin <m>',
      'added to the 0.99 quantile of the train→held-out maxima to make the threshold',
      '0.05',
    )
    .option('--top-k <k>', 'coarse matches re-checked at full resolution', '10')
    .option('--max-shift <px>', 'largest shift searched at full resolution (default size/16)')
    .option('--review <file.html>', 'also write the local review page (contains private images)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: AuditOptions) => {
      const margin = parseNumber('--margin', opts.margin, 0, 1);
      const topK = parseNumber('--top-k', opts.topK ?? '10', 1, 10_000);
      const maxShift =
        opts.maxShift === undefined ? undefined : parseNumber('--max-shift', opts.maxShift, 0, 64);
      const { SliceStoreReader } = await import('@fedsynth/common/slices/index');
      const { resolveSliceStore } = await import('@fedsynth/common/ml/jobs/job-files');
      const audit = await import('@fedsynth/common/audit/index');
      const reader = await SliceStoreReader.open(opts.candidates).catch((error: Error) => {
        throw new UsageError(`--candidates: ${error.message}`);
      });
      const size = reader.meta.size;
      await reader.close();
      const privateStore = await resolveSliceStore(
        opts.private,
        size,
        path.join(path.dirname(path.resolve(opts.candidates)), `.private-${size}.fss`),
        { log: (line) => console.error(line) },
      );
      const bars = new Map<string, InstanceType<typeof StderrProgress>>();
      let result;
      try {
        result = await audit.runAuditInWorker({
          candidates: opts.candidates,
          privateStore,
          margin,
          topK,
          maxShift,
          onProgress: (p) => {
            let bar = bars.get(p.stage);
            if (!bar) bars.set(p.stage, (bar = new StderrProgress(`audit ${p.stage}`, 'slices')));
            bar.update(p.done, p.total);
          },
        });
      } catch (error) {
        if ((error as Error).name === 'AuditInputError' || audit.isAuditReferenceError(error))
          throw new UsageError((error as Error).message);
        throw error;
      }
      for (const bar of bars.values()) bar.finish();
      let reviewFile: string | undefined;
      if (opts.review) {
        const record = audit.localAuditRecord(result, {
          auditId: `local-${new Date().toISOString()}`,
          candidates: opts.candidates,
          privateStore,
        });
        reviewFile = await audit.writeReviewPage([record], opts.review);
      }
      const summary = {
        candidates: result.scores.length,
        flagged: result.flagged.length,
        threshold: result.threshold,
        margin,
        referenceQuantile: result.settings.quantile,
        referenceKind: result.referenceKind,
        reference: {
          slices: result.reference.length,
          subjects: result.referenceSubjects,
          max: Math.max(...result.reference),
        },
        privateTrainSlices: result.privateTrainSlices,
        seconds: result.seconds,
        flaggedCandidates: result.flagged.map((i) => ({ candidate: i, score: result.scores[i] })),
        scores: result.scores,
        ...(reviewFile ? { review: reviewFile } : {}),
      };
      if (opts.json) {
        console.log(JSON.stringify(summary, null, 2));
        return;
      }
      const reference =
        result.referenceKind === 'held-out'
          ? `${summary.reference.slices} held-out maxima`
          : `${summary.reference.slices} leave-one-subject-out maxima, ${summary.reference.subjects} training ` +
            `subjects, none held out,`;
      console.log(
        `${summary.candidates} candidates against ${summary.privateTrainSlices} private training slices (+ mirrors): ` +
          `${summary.flagged} flagged above ${summary.threshold.toFixed(4)} ` +
          `(0.99 quantile of ${reference} + margin ${margin}); ${summary.seconds.toFixed(1)} s`,
      );
      for (const f of summary.flaggedCandidates)
        console.log(`flagged #${f.candidate}: ${f.score!.toFixed(4)}`);
      if (reviewFile) console.log(`review page (private images, keep local): ${reviewFile}`);
    });
}

/** `fedsynth site review`: added to the `site` command. */
export function registerSiteReviewCommand(site: Command): void {
  site
    .command('review')
    .description(
      'write a local HTML page of flagged audit candidates beside their nearest private slices (never sent anywhere)',
    )
    .requiredOption('--state <dir>', 'the state directory of `fedsynth site enroll`')
    .option('--out <file.html>', 'page to write', 'audit-review.html')
    .action(async (opts: { state: string; out: string }) => {
      const { readLocalAuditRecords, writeReviewPage } = await import('@fedsynth/common/audit/index');
      const records = await readLocalAuditRecords(path.resolve(opts.state));
      const file = await writeReviewPage(records, opts.out);
      const flagged = records.reduce((s, r) => s + r.flagged.length, 0);
      console.log(
        `${file}: ${records.length} audit(s), ${flagged} flagged candidate(s). It contains private images: keep it on site.`,
      );
    });
}
