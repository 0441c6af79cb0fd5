// `fedsynth demo`: the federated run on this machine (site-agent/src/demo), or with --data-only the data pipeline
// alone (phantom -> NIfTI -> checks -> slices -> previews).
import type { Command } from 'commander';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { discoverCases, inspectCase, loadCase } from '@fedsynth/common/brats/index';
import { renderSliceGrid } from '@fedsynth/common/imaging/index';
import { phantomSiteSizes, writePhantomSites } from '@fedsynth/common/phantom/index';
import { buildSliceStore, isSlicePresetName, SliceStoreReader } from '@fedsynth/common/slices/index';
import { StderrProgress } from '@fedsynth/common/util/progress';
import { parseInteger, UsageError } from '../cli-errors.js';
import { parseDims } from './phantom.command.js';

interface DemoOptions {
  out?: string;
  sites: string;
  cases: string;
  seed: string;
  preset: string;
  dims?: string;
  json?: boolean;
  dataOnly?: boolean;
  siteSizes?: string;
  generator: string;
  profile: string;
  rounds: string;
  localSteps: string;
  batchSize: string;
  samplesPerSite: string;
  roundTimeout: string;
  segSteps: string;
  segRounds: string;
  skipUtility?: boolean;
  skipAudit?: boolean;
}

interface SiteSummary {
  site: string;
  cases: number;
  slices: number;
  trainSubjects: number;
  testSubjects: number;
  store: string;
  preview: string;
  canonicalCountsFirstCase?: { caseId: string; NCR: number; ED: number; ET: number };
}

function timestamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19);
}

async function runDataOnlyDemo(opts: DemoOptions): Promise<void> {
  if (!isSlicePresetName(opts.preset)) throw new UsageError(`--preset must be paper, cpu64, cpu32 or cpu16`);
  const started = Date.now();
  const runDir = path.resolve(opts.out ?? path.join('runs', timestamp()));
  const seed = parseInteger('--seed', opts.seed);
  await mkdir(runDir, { recursive: true });
  const log = (line: string) => {
    if (!opts.json) console.log(line);
  };
  log(`fedsynth demo --data-only — the data pipeline on phantom sites -> ${runDir}`);

  const phantomProgress = new StderrProgress('phantom', 'cases');
  const manifest = await writePhantomSites({
    out: path.join(runDir, 'data'),
    sites: parseInteger('--sites', opts.sites, 1),
    cases: parseInteger('--cases', opts.cases, 1),
    seed,
    naming: '2023',
    dims: opts.dims ? parseDims(opts.dims) : undefined,
    onProgress: (e) => phantomProgress.update(e.done, e.total, `${e.site}/${e.caseId}`),
  });
  phantomProgress.finish();

  const sites: SiteSummary[] = [];
  for (const site of manifest.sites) {
    const { cases } = await discoverCases(site.dir);
    const first = cases[0] ? inspectCase(await loadCase(cases[0])) : undefined;
    const store = path.join(runDir, 'slices', `${site.name}.${opts.preset}.fss`);
    await mkdir(path.dirname(store), { recursive: true });
    const progress = new StderrProgress(`slices ${site.name}`, 'cases');
    const summary = await buildSliceStore({
      dataDir: site.dir,
      out: store,
      preset: opts.preset,
      seed,
      onProgress: (e) => progress.update(e.done, e.total, e.caseId),
    });
    progress.finish();
    const reader = await SliceStoreReader.open(store);
    const previewCount = Math.min(6, reader.count);
    const step = Math.max(1, Math.floor(reader.count / Math.max(previewCount, 1)));
    const picks = Array.from({ length: previewCount }, (_, i) => i * step);
    const preview = path.join(runDir, 'previews', `${site.name}.png`);
    await mkdir(path.dirname(preview), { recursive: true });
    await writeFile(
      preview,
      renderSliceGrid(await reader.readIndices(picks), picks.length, {
        size: reader.meta.size,
        channels: reader.meta.channels.length,
      }),
    );
    await reader.close();
    sites.push({
      site: site.name,
      cases: summary.casesSliced,
      slices: summary.slices,
      trainSubjects: summary.trainSubjects,
      testSubjects: summary.testSubjects,
      store,
      preview,
      canonicalCountsFirstCase: first?.labels
        ? { caseId: first.caseId, ...first.labels.canonical }
        : undefined,
    });
    log(
      `${site.name}: ${summary.casesSliced} cases -> ${summary.slices} slices (${summary.trainSubjects} train / ${summary.testSubjects} test subjects)`,
    );
  }
  const result = {
    runDir,
    stage: 'data pipeline (phantom -> NIfTI -> checks -> slices)',
    preset: opts.preset,
    sites,
    totalCases: sites.reduce((a, s) => a + s.cases, 0),
    totalSlices: sites.reduce((a, s) => a + s.slices, 0),
    seconds: (Date.now() - started) / 1000,
  };
  await writeFile(path.join(runDir, 'summary.json'), JSON.stringify(result, null, 2));
  if (opts.json) console.log(JSON.stringify(result, null, 2));
  else
    log(
      `done in ${result.seconds.toFixed(1)} s: ${result.totalCases} cases, ${result.totalSlices} slices; previews in ${path.join(runDir, 'previews')}`,
    );
}

const GENERATORS = ['progan', 'stylegan1', 'stylegan2', 'stylegan3', 'ddpm'] as const;
const PROFILES = ['paper', 'cpu', 'tiny'] as const;

async function runFederated(opts: DemoOptions): Promise<void> {
  if (!(GENERATORS as readonly string[]).includes(opts.generator))
    throw new UsageError(`--generator must be one of ${GENERATORS.join(', ')}`);
  if (!(PROFILES as readonly string[]).includes(opts.profile))
    throw new UsageError(`--profile must be one of ${PROFILES.join(', ')}`);
  const { runFederatedDemo } = await import('../../demo/federated-demo.js');
  const runDir = path.resolve(opts.out ?? path.join('runs', timestamp()));
  const log = (line: string) => {
    if (!opts.json) console.log(line);
    else console.error(line);
  };
  const { siteSizes, cases } = federatedSiteSizes(opts);
  const controller = new AbortController();
  let interrupts = 0;
  // Ctrl-C: stop polling, then the run's finally stops every child; a second Ctrl-C kills them at once
  const onSignal = (signal: NodeJS.Signals) => {
    if (++interrupts > 1) {
      killAll?.();
      process.exit(130);
    }
    console.error(`fedsynth demo: ${signal}, stopping the federation ...`);
    controller.abort();
  };
  let killAll: (() => void) | undefined;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  log(`fedsynth demo — a federation on this machine -> ${runDir}`);
  try {
    const summary = await runFederatedDemo({
      runDir,
      sites: siteSizes.length,
      cases,
      siteSizes,
      seed: parseInteger('--seed', opts.seed),
      dims: opts.dims ? parseDims(opts.dims) : undefined,
      generator: opts.generator as (typeof GENERATORS)[number],
      profile: opts.profile as (typeof PROFILES)[number],
      rounds: parseInteger('--rounds', opts.rounds, 1),
      localSteps: parseInteger('--local-steps', opts.localSteps, 1),
      batchSize: parseInteger('--batch-size', opts.batchSize, 1),
      samplesPerSite: parseInteger('--samples-per-site', opts.samplesPerSite, 1),
      roundTimeoutMs: parseInteger('--round-timeout', opts.roundTimeout, 1) * 1000,
      segmenterSteps: parseInteger('--seg-steps', opts.segSteps, 1),
      segmenterRounds: parseInteger('--seg-rounds', opts.segRounds, 1),
      skipUtility: opts.skipUtility,
      skipAudit: opts.skipAudit,
      log,
      signal: controller.signal,
      onGroup: (group) => {
        killAll = () => group.killAllNow();
        process.once('exit', killAll);
      },
    });
    if (opts.json) console.log(JSON.stringify(summary, null, 2));
    else {
      const { formatDemoSummary } = await import('../../demo/demo-text.js');
      console.log(formatDemoSummary(summary));
    }
  } catch (error) {
    const summary = (error as { summary?: { report?: string } }).summary;
    if (summary?.report) console.error(`fedsynth demo: report of the failed run in ${summary.report}`);
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'a federation on this machine: phantom sites, coordinator and site agents as processes, a FedAvg generator ' +
        'study, utility, audit, release; summary and report.html (--data-only: the data pipeline alone)',
    )
    .option('--out <dir>', 'run folder (default runs/<timestamp>)')
    .option('--data-only', 'only the data pipeline: phantom -> NIfTI -> checks -> slices -> previews')
    .option('--sites <n>', 'number of phantom sites', '3')
    .option('--cases <m>', 'phantom cases over all sites', '12')
    .option('--site-sizes <list>', 'cases per site, e.g. 6,4,2 (default: a seeded unequal split of --cases)')
    .option('--seed <s>', 'seed', '1')
    .option('--preset <name>', 'slice preset of --data-only: paper | cpu64 | cpu32', 'cpu64')
    .option('--dims <WxHxD>', 'phantom grid (default 240x240x155)')
    .option('--generator <model>', GENERATORS.join(' | '), 'progan')
    .option('--profile <profile>', PROFILES.join(' | '), 'tiny')
    .option('--rounds <n>', 'FedAvg rounds', '2')
    .option('--local-steps <n>', 'optimizer steps per site and round', '600')
    .option('--batch-size <n>', 'batch size', '8')
    .option('--samples-per-site <n>', 'synthetic slices each site draws at the end', '64')
    .option('--round-timeout <s>', 'seconds after which a round closes with the sites that finished', '600')
    .option(
      '--seg-steps <n>',
      'segmenter steps of the utility step (central; FedAvg: rounds × steps/rounds)',
      '120',
    )
    .option('--seg-rounds <n>', 'FedAvg rounds of the real baseline in the utility step', '2')
    .option('--skip-utility', 'skip the segmentation utility step')
    .option('--skip-audit', 'skip audit, approval and release')
    .option('--json', 'print the summary as JSON (progress goes to stderr)')
    .action(async (opts: DemoOptions) => {
      if (opts.dataOnly) await runDataOnlyDemo(opts);
      else await runFederated(opts);
    });
}

/**
 * Cases per site of the federated demo: every site needs a training and a held-out test subject (the local
 * memorization pre-check, the evaluation and the audit use the test subjects), so at least 2 each. Without
 * --site-sizes, an unequal seeded split of --cases on top of 1 case per site.
 */
export function federatedSiteSizes(opts: {
  siteSizes?: string;
  sites: string;
  cases: string;
  seed: string;
}): {
  siteSizes: number[];
  cases: number;
} {
  if (opts.siteSizes) {
    const siteSizes = opts.siteSizes.split(',').map((n) => parseInteger('--site-sizes', n.trim(), 2));
    return { siteSizes, cases: siteSizes.reduce((a, b) => a + b, 0) };
  }
  const sites = parseInteger('--sites', opts.sites, 1);
  const cases = parseInteger('--cases', opts.cases, 1);
  if (cases < 2 * sites)
    throw new UsageError(
      `--cases must be at least 2 per site (a training and a test subject each): ${cases} for ${sites} sites`,
    );
  const extra = phantomSiteSizes({ sites, cases: cases - sites, seed: parseInteger('--seed', opts.seed) });
  return { siteSizes: extra.map((n) => n + 1), cases };
}
