import type { Command } from 'commander';
import {
  discoverCases,
  inspectCase,
  isLabelScheme,
  loadCase,
  parseModalityMap,
  type CaseReport,
  type LabelScheme,
} from '@fedsynth/common/brats/index';
import { UsageError } from '../cli-errors.js';

interface InspectOptions {
  map?: string;
  labels?: string;
  json?: boolean;
  allowUnlabelled?: boolean;
}

function formatReport(r: CaseReport): string {
  const lines = [
    `case       ${r.caseId}  (${r.naming} naming${r.cohort ? `, cohort ${r.cohort}` : ''})`,
    `folder     ${r.dir}`,
    r.scheme
      ? `labels     scheme ${r.scheme.name} (from ${r.scheme.source}): ${r.scheme.description}`
      : 'labels     none (unlabelled case)',
    '',
    'sequence  dims          spacing (mm)     datatype  min        max',
  ];
  const row = (name: string, v: CaseReport['modalities'][string]) =>
    `${name.padEnd(9)} ${v.dims.join('x').padEnd(13)} ${v.spacing
      .map((s) => s.toFixed(2))
      .join(' x ')
      .padEnd(16)} ${v.datatype.padEnd(9)} ${String(v.min).padEnd(10)} ${v.max}`;
  for (const [name, v] of Object.entries(r.modalities)) lines.push(row(name, v));
  if (r.seg) lines.push(row('seg', r.seg));
  lines.push('', `brain voxels  ${r.brainVoxels}`);
  if (r.labels) {
    lines.push(
      `raw labels    ${Object.entries(r.labels.raw)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')}`,
    );
    const c = r.labels.canonical;
    lines.push(`canonical     NCR ${c.NCR}, ED ${c.ED}, ET ${c.ET}`);
  }
  return lines.join('\n');
}

export function registerInspectCommand(program: Command): void {
  program
    .command('inspect')
    .description('decode and check one BraTS case; print grids, intensities, label scheme and label counts')
    .argument('<case-dir>', 'folder holding the case (BraTS 2020/2021/2023 naming, or use --map)')
    .option(
      '--map <spec>',
      'modality -> file pattern: "t1=*_T1w.nii.gz,t1ce=...,t2=...,flair=...,seg=..." or a .json file',
    )
    .option(
      '--labels <scheme>',
      'force the label scheme: 2013 | 2017 | 2023 (default: from naming, else from values)',
    )
    .option('--allow-unlabelled', 'accept a case without a seg file')
    .option('--json', 'print JSON')
    .action(async (caseDir: string, opts: InspectOptions) => {
      if (opts.labels !== undefined && !isLabelScheme(opts.labels)) {
        throw new UsageError(`--labels must be 2013, 2017 or 2023, got "${opts.labels}"`);
      }
      const map = opts.map ? await parseModalityMap(opts.map) : undefined;
      const { cases, problems } = await discoverCases(caseDir, map);
      if (cases.length === 0) {
        const why = problems.map((p) => `${p.caseId}: ${p.reason}`).join('; ');
        throw new UsageError(`no complete case found in ${caseDir}${why ? ` (${why})` : ''}`);
      }
      if (cases.length > 1) {
        throw new UsageError(
          `${caseDir} holds ${cases.length} cases (${cases
            .slice(0, 3)
            .map((c) => c.id)
            .join(', ')}${cases.length > 3 ? ', ...' : ''}); give one case folder`,
        );
      }
      const loaded = await loadCase(cases[0]!, {
        labels: opts.labels as LabelScheme | undefined,
        allowUnlabelled: opts.allowUnlabelled,
      });
      const report = inspectCase(loaded);
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatReport(report));
    });
}
