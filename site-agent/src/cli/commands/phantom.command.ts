import type { Command } from 'commander';
import { writePhantomSites, type BratsNaming } from '@fedsynth/common/phantom/index';
import { StderrProgress } from '@fedsynth/common/util/progress';
import { parseInteger, UsageError } from '../cli-errors.js';

interface PhantomOptions {
  out: string;
  sites: string;
  cases: string;
  seed: string;
  naming: string;
  siteSizes?: string;
  dims?: string;
  json?: boolean;
}

export function parseDims(value: string): [number, number, number] {
  const parts = value.split(/[x,]/).map((p) => Number(p));
  if (parts.length !== 3 || parts.some((p) => !Number.isInteger(p) || p < 8)) {
    throw new UsageError(`--dims must be WxHxD with each ≥ 8, got "${value}"`);
  }
  return parts as [number, number, number];
}

export function registerPhantomCommand(program: Command): void {
  program
    .command('phantom')
    .description(
      'write synthetic BraTS-like cases (real NIfTI files, one folder per site) for demos and tests',
    )
    .requiredOption('--out <dir>', 'output folder (site-1/, site-2/, ... and phantom.json)')
    .option('--sites <n>', 'number of sites', '3')
    .option('--cases <m>', 'number of cases over all sites', '12')
    .option('--seed <s>', 'seed: the same seed writes the same files', '1')
    .option('--naming <year>', 'BraTS naming and label scheme: 2020 | 2021 | 2023', '2023')
    .option(
      '--site-sizes <list>',
      'cases per site, e.g. 6,4,2 (default: unequal, like federated BraTS partitions)',
    )
    .option('--dims <WxHxD>', 'volume grid (default 240x240x155, as BraTS)')
    .option('--json', 'print the manifest as JSON')
    .action(async (opts: PhantomOptions) => {
      if (!['2020', '2021', '2023'].includes(opts.naming)) {
        throw new UsageError(`--naming must be 2020, 2021 or 2023, got "${opts.naming}"`);
      }
      const sites = parseInteger('--sites', opts.sites, 1);
      const cases = parseInteger('--cases', opts.cases, 1);
      const siteSizes = opts.siteSizes?.split(',').map((s) => parseInteger('--site-sizes', s.trim(), 1));
      const progress = new StderrProgress('phantom', 'cases');
      const manifest = await writePhantomSites({
        out: opts.out,
        sites,
        cases,
        siteSizes,
        seed: parseInteger('--seed', opts.seed),
        naming: opts.naming as BratsNaming,
        dims: opts.dims ? parseDims(opts.dims) : undefined,
        onProgress: (e) => progress.update(e.done, e.total, `${e.site}/${e.caseId}`),
      });
      progress.finish();
      if (opts.json) {
        console.log(JSON.stringify(manifest, null, 2));
      } else {
        for (const site of manifest.sites) console.log(`${site.dir}: ${site.cases.length} cases`);
      }
    });
}
