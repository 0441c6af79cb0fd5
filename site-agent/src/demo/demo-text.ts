// The demo's closing summary as text.
import type { DemoSummary } from './demo-summary.js';

function fmt(value: number | null | undefined): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '  –  ' : value.toFixed(3);
}

export function formatDemoSummary(s: DemoSummary): string {
  const lines: string[] = ['', 'summary'];
  lines.push(`  sites:`);
  for (const site of s.sites)
    lines.push(
      `    ${site.name.padEnd(8)} ${String(site.cases).padStart(3)} cases, ${site.trainSlices ?? '?'} training slices, ` +
        `${site.roundsContributed ?? 0} round(s) contributed, ${site.samples ?? 0} synthetic slices pooled`,
    );
  lines.push(
    `  study:  ${s.study ? `${s.study.rounds.length} round(s), ${s.study.pooled} samples pooled (id ${s.study.id})` : 'none'}`,
  );
  if (s.utility.status === 'done' && s.utility.rows?.length) {
    const site = s.utility.rows[0]!.site;
    lines.push(
      `  Dice (${site}):`,
      `    ${''.padEnd(28)} ${['WT', 'TC', 'ET'].map((k) => k.padStart(5)).join('  ')}`,
    );
    for (const row of s.utility.rows)
      lines.push(`    ${row.model.padEnd(28)} ${fmt(row.dice.WT)}  ${fmt(row.dice.TC)}  ${fmt(row.dice.ET)}`);
  } else lines.push(`  utility: ${s.utility.status}${s.utility.reason ? ` (${s.utility.reason})` : ''}`);
  if (s.audit.status === 'done')
    lines.push(
      `  audit:  ${s.audit.candidates ?? '?'} candidates, ${s.audit.flagged ?? '?'} withheld, ${s.audit.approved ?? '?'} approved`,
    );
  else lines.push(`  audit:  ${s.audit.status}${s.audit.reason ? ` (${s.audit.reason})` : ''}`);
  if (s.release.status === 'done')
    lines.push(
      `  release: ${s.release.path} (${s.release.bytes ?? '?'} bytes)`,
      `           sha256 ${s.release.sha256}`,
    );
  else lines.push(`  release: ${s.release.status}${s.release.reason ? ` (${s.release.reason})` : ''}`);
  lines.push(`  report: ${s.report ?? '-'}`);
  lines.push(`  total:  ${s.seconds.toFixed(1)} s`);
  return lines.join('\n');
}
