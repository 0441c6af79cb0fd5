// The demo's report.html: one self-contained file (sample grids inlined as PNG data URIs, histograms as inline SVG).
import { readFile } from 'node:fs/promises';
import type { DemoSummary, StageOutcome } from './demo-summary.js';

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

async function pngDataUri(file: string | undefined): Promise<string | undefined> {
  if (!file) return undefined;
  try {
    return `data:image/png;base64,${(await readFile(file)).toString('base64')}`;
  } catch {
    return undefined;
  }
}

function fmt(value: number | null | undefined, digits = 3): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);
}

function stageNote(outcome: StageOutcome): string {
  if (outcome.status === 'done') return '';
  return `<p class="note">${outcome.status === 'skipped' ? 'Skipped' : 'Not available'}${
    outcome.reason ? `: ${escapeHtml(outcome.reason)}` : ''
  }.</p>`;
}

/** A bar chart of one histogram, with the threshold as a red line. */
export function histogramSvg(bins: number[], edges: number[], threshold?: number): string {
  const width = 320;
  const height = 110;
  const max = Math.max(1, ...bins);
  const lo = edges[0] ?? 0;
  const hi = edges[edges.length - 1] ?? 1;
  const x = (v: number) => ((v - lo) / (hi - lo || 1)) * width;
  const bars = bins
    .map((count, i) => {
      const x0 = x(edges[i] ?? lo);
      const x1 = x(edges[i + 1] ?? hi);
      const h = (count / max) * (height - 20);
      return `<rect x="${x0.toFixed(1)}" y="${(height - 15 - h).toFixed(1)}" width="${Math.max(1, x1 - x0 - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="#4a7bb7"><title>${count}</title></rect>`;
    })
    .join('');
  const line =
    threshold !== undefined && threshold >= lo && threshold <= hi
      ? `<line x1="${x(threshold).toFixed(1)}" x2="${x(threshold).toFixed(1)}" y1="0" y2="${height - 15}" stroke="#c0392b" stroke-width="2"><title>threshold ${fmt(threshold)}</title></line>`
      : '';
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img">${bars}${line}` +
    `<text x="0" y="${height - 2}" font-size="10">${fmt(lo, 2)}</text>` +
    `<text x="${width - 24}" y="${height - 2}" font-size="10">${fmt(hi, 2)}</text></svg>`
  );
}

export async function renderDemoReport(summary: DemoSummary): Promise<string> {
  const siteRows: string[] = [];
  const grids: string[] = [];
  for (const s of summary.sites) {
    siteRows.push(
      `<tr><td>${escapeHtml(s.name)}</td><td>${s.cases}</td><td>${s.realSlices ?? '–'}</td><td>${
        s.trainSlices ?? '–'
      }</td><td>${s.roundsContributed ?? '–'}</td><td>${s.samples ?? '–'}</td><td><code>${escapeHtml(
        s.sampleSha256?.slice(0, 16) ?? '–',
      )}</code></td></tr>`,
    );
    const real = await pngDataUri(s.realPreview);
    const synthetic = await pngDataUri(s.syntheticPreview);
    grids.push(
      `<figure><figcaption>${escapeHtml(s.name)} — real (private, shown only here)</figcaption>${
        real ? `<img src="${real}" alt="real slices of ${escapeHtml(s.name)}">` : '<p class="note">none</p>'
      }</figure><figure><figcaption>${escapeHtml(s.name)} — synthetic (pooled)</figcaption>${
        synthetic
          ? `<img src="${synthetic}" alt="synthetic slices of ${escapeHtml(s.name)}">`
          : '<p class="note">none</p>'
      }</figure>`,
    );
  }
  const rounds = summary.study?.rounds ?? [];
  const roundRows = rounds
    .map((r) => {
      const cells = summary.sites
        .map((s) => {
          const c = r.contributions[s.siteId];
          return `<td>${c ? `${c.trainSlices ?? '?'} slices, loss ${fmt(c.finalLoss)}` : '—'}</td>`;
        })
        .join('');
      return `<tr><td>${r.index + 1}</td>${cells}</tr>`;
    })
    .join('');
  const labels = ['WT', 'TC', 'ET', 'NCR', 'ED'];
  const diceRows = (summary.utility.rows ?? [])
    .map(
      (row) =>
        `<tr><td>${escapeHtml(row.model)}</td><td>${escapeHtml(row.site)}</td><td>${row.subjects ?? '–'}</td>${labels
          .map((l) => `<td>${fmt(row.dice[l])}</td>`)
          .join('')}</tr>`,
    )
    .join('');
  const ratio = summary.utility.ratio
    ? `<p>Synthetic / real Dice: ${labels
        .filter((l) => summary.utility.ratio![l] !== undefined)
        .map((l) => `${l} ${fmt(summary.utility.ratio![l], 2)}`)
        .join(', ')}</p>`
    : '';
  const hist = (summary.audit.histograms ?? [])
    .map(
      (h) =>
        `<figure><figcaption>${escapeHtml(h.site)} — max correlation of each candidate (threshold ${fmt(
          h.threshold,
        )})</figcaption>${histogramSvg(h.bins, h.edges, h.threshold)}</figure>`,
    )
    .join('');
  const release = summary.release;
  const timings = Object.entries(summary.timings)
    .map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${v.toFixed(1)} s</td></tr>`)
    .join('');
  const st = summary.settings;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedsynth demo — ${escapeHtml(summary.runDir)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figcaption{font-size:.85em;color:#555}img{image-rendering:pixelated;max-width:520px}.note{color:#777;font-style:italic}
.error{color:#b00;font-weight:bold}code{font-size:.9em}
</style></head><body>
<h1>fedsynth demo</h1>
<p>Run folder <code>${escapeHtml(summary.runDir)}</code>; coordinator ${escapeHtml(summary.coordinatorUrl)};
total ${summary.seconds.toFixed(1)} s. Phantom BraTS data (no patient data): ${st.cases} cases over ${st.sites} sites.
Study: ${escapeHtml(st.generator)} '${escapeHtml(st.profile)}', FedAvg, ${st.rounds} rounds × ${st.localSteps} local
steps (batch ${st.batchSize}), ${st.samplesPerSite} samples per site, seed ${st.seed}.</p>
${summary.error ? `<p class="error">Failed at “${escapeHtml(summary.error.step)}”: ${escapeHtml(summary.error.message)}</p>` : ''}
<h2>Sites and contributions</h2>
<table><tr><th>site</th><th>cases</th><th>real slices (preview preset)</th><th>training slices (FedAvg weight)</th>
<th>rounds contributed</th><th>synthetic slices pooled</th><th>pool blob</th></tr>${siteRows.join('')}</table>
<h3>Rounds</h3>
${rounds.length ? `<table><tr><th>round</th>${summary.sites.map((s) => `<th>${escapeHtml(s.name)}</th>`).join('')}</tr>${roundRows}</table>` : '<p class="note">no rounds</p>'}
<p>Synthetic slices pooled: ${summary.study?.pooled ?? 0}.</p>
<h2>Samples</h2>
<p>Channels left to right: T1, T2, FLAIR, T1ce, annotation.</p>
${grids.join('\n')}
<h2>Utility: segmentation Dice at the sites</h2>
${stageNote(summary.utility)}
${diceRows ? `<table><tr><th>segmenter trained on</th><th>site</th><th>subjects</th>${labels.map((l) => `<th>${l}</th>`).join('')}</tr>${diceRows}</table>` : ''}
${ratio}
<h2>Memorization audit</h2>
${stageNote(summary.audit)}
${summary.audit.status === 'done' ? `<p>${summary.audit.candidates ?? '?'} candidates, ${summary.audit.flagged ?? '?'} withheld (above a site's threshold), ${summary.audit.approved ?? '?'} approved.</p>` : ''}
${hist}
<h2>Release</h2>
${stageNote(release)}
${release.status === 'done' ? `<p>Release ${escapeHtml(release.id)} (${escapeHtml(release.version ?? '')}): ${release.samples ?? '?'} samples, downloaded to <code>${escapeHtml(release.path)}</code> (${release.bytes ?? '?'} bytes), sha256 <code>${escapeHtml(release.sha256)}</code>.</p>` : ''}
<h2>Logs and timings</h2>
<p>Coordinator: <code>${escapeHtml(summary.logs.coordinator)}</code><br>${Object.entries(summary.logs.sites)
    .map(([name, file]) => `${escapeHtml(name)}: <code>${escapeHtml(file)}</code>`)
    .join('<br>')}</p>
<table>${timings}</table>
</body></html>
`;
}
