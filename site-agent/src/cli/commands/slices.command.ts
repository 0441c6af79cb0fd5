import type { Command } from 'commander';
import { isLabelScheme, parseModalityMap, type LabelScheme } from '@fedsynth/common/brats/index';
import { buildSliceStore, isSlicePresetName, type IntensityScale } from '@fedsynth/common/slices/index';
import { exportSliceStoreNifti } from '@fedsynth/common/slices/slice-nifti-export';
import { StderrProgress } from '@fedsynth/common/util/progress';
import { parseFraction, parseInteger, UsageError } from '../cli-errors.js';

interface SlicesOptions {
  preset: string;
  out: string;
  scale: string;
  nifti?: string;
  map?: string;
  labels?: string;
  allowUnlabelled?: boolean;
  testFraction: string;
  seed: string;
  strict?: boolean;
  json?: boolean;
}

export function registerSlicesCommand(program: Command): void {
  program
    .command('slices')
    .description(
      "cut BraTS cases into 5-channel axial slices (the paper's preprocessing) and write a slice store",
    )
    .argument('<data-dir>', 'folder of BraTS cases')
    .requiredOption('--out <file>', 'slice store to write (.fss)')
    .option('--preset <name>', 'paper (256²) | cpu64 | cpu32 | cpu16', 'paper')
    .option(
      '--scale <mode>',
      'max (paper: volume ÷ max × 255) | percentile (÷ 99.5th percentile of the brain)',
      'max',
    )
    .option('--nifti <file>', 'also write the slices as a 4-D NIfTI [W, H, N, 5] (.nii or .nii.gz)')
    .option('--map <spec>', 'modality -> file pattern for data not named the BraTS way (see inspect --help)')
    .option('--labels <scheme>', 'force the label scheme: 2013 | 2017 | 2023')
    .option('--allow-unlabelled', 'accept cases without a seg file (usable for generation only)')
    .option('--test-fraction <f>', 'share of subjects held out for testing', '0.15')
    .option('--seed <n>', 'seed of the subject split', '0')
    .option('--strict', 'exit with code 3 when any case was skipped')
    .option('--json', 'print the summary as JSON')
    .action(async (dataDir: string, opts: SlicesOptions) => {
      if (!isSlicePresetName(opts.preset))
        throw new UsageError(`--preset must be paper, cpu64, cpu32 or cpu16, got "${opts.preset}"`);
      if (opts.scale !== 'max' && opts.scale !== 'percentile') {
        throw new UsageError(`--scale must be max or percentile, got "${opts.scale}"`);
      }
      if (opts.labels !== undefined && !isLabelScheme(opts.labels)) {
        throw new UsageError(`--labels must be 2013, 2017 or 2023, got "${opts.labels}"`);
      }
      const progress = new StderrProgress('slices', 'cases');
      const summary = await buildSliceStore({
        dataDir,
        out: opts.out,
        preset: opts.preset,
        scale: opts.scale as IntensityScale,
        map: opts.map ? await parseModalityMap(opts.map) : undefined,
        labels: opts.labels as LabelScheme | undefined,
        allowUnlabelled: opts.allowUnlabelled,
        testFraction: parseFraction('--test-fraction', opts.testFraction),
        seed: parseInteger('--seed', opts.seed),
        onProgress: (e) => progress.update(e.done, e.total, e.caseId),
      });
      progress.finish();
      let niftiOut: string | undefined;
      if (opts.nifti) {
        const exportProgress = new StderrProgress('nifti', 'channels');
        niftiOut = await exportSliceStoreNifti(summary.out, opts.nifti, (done, total) =>
          exportProgress.update(done, total),
        );
        exportProgress.finish();
      }
      const { meta: _meta, ...brief } = summary;
      if (opts.json) {
        console.log(JSON.stringify({ ...brief, nifti: niftiOut }, null, 2));
      } else {
        console.log(
          `${summary.out}: ${summary.slices} slices (${summary.preset}, ${summary.scale} scaling) from ${summary.casesSliced}/${summary.casesFound} cases; ` +
            `${summary.trainSubjects} train / ${summary.testSubjects} test subjects; ${(summary.elapsedMs / 1000).toFixed(1)} s`,
        );
        if (niftiOut) console.log(`4-D NIfTI: ${niftiOut}`);
        for (const s of summary.skipped)
          console.log(`skipped ${s.caseId}${s.file ? ` (${s.file})` : ''}: ${s.reason}`);
      }
      if (opts.strict && summary.skipped.length > 0) process.exitCode = 3;
    });
}
