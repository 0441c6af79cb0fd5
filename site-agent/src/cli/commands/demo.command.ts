// `fedsynth demo`: today the data pipeline end to end on phantom sites (the federation arrives with issue 5).
import type { Command } from 'commander';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { discoverCases, inspectCase, loadCase } from '@fedsynth/common/brats/index';
import { renderSliceGrid } from '@fedsynth/common/imaging/index';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
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

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the data pipeline end to end on phantom sites (studies are not built yet)')
    .option('--out <dir>', 'run folder (default runs/<timestamp>)')
    .option('--sites <n>', 'number of phantom sites', '3')
    .option('--cases <m>', 'phantom cases over all sites', '12')
    .option('--seed <s>', 'seed', '1')
    .option('--preset <name>', 'slice preset: paper | cpu64 | cpu32', 'cpu64')
    .option('--dims <WxHxD>', 'phantom grid (default 240x240x155)')
    .option('--json', 'print the summary as JSON')
    .action(async (opts: DemoOptions) => {
      if (!isSlicePresetName(opts.preset))
        throw new UsageError(`--preset must be paper, cpu64, cpu32 or cpu16`);
      const started = Date.now();
      const runDir = path.resolve(opts.out ?? path.join('runs', timestamp()));
      const seed = parseInteger('--seed', opts.seed);
      await mkdir(runDir, { recursive: true });
      const log = (line: string) => {
        if (!opts.json) console.log(line);
      };
      log(`fedsynth demo — data pipeline on phantom sites (studies not built yet) -> ${runDir}`);

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
        stage: 'data pipeline (phantom -> NIfTI -> checks -> slices); studies not built yet',
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
    });
}
