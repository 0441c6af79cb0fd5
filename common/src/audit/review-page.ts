// The local review page: each flagged candidate beside its nearest private slice (in the matched orientation and
// shift), with its score. Self-contained HTML (PNG data URIs) for the hospital's own staff: it shows private images
// and is written to the local disk only.
import { writeFile } from 'node:fs/promises';
import { renderSliceGrid } from '../imaging/slice-grid.js';
import { SliceStoreReader } from '../slices/slice-store.js';
import type { LocalAuditRecord } from './local-record.js';

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** One slice moved the way the audit matched it: mirrored left-right, then shifted by (dx, dy), zero fill. */
function transformSlice(
  slice: Uint8Array,
  size: number,
  channels: number,
  mirror: boolean,
  dx: number,
  dy: number,
): Uint8Array {
  const out = new Uint8Array(slice.length);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let sx = x - dx;
      const sy = y - dy;
      if (mirror) sx = size - 1 - sx;
      if (sx < 0 || sy < 0 || sx >= size || sy >= size) continue;
      for (let c = 0; c < channels; c++)
        out[(y * size + x) * channels + c] = slice[(sy * size + sx) * channels + c]!;
    }
  }
  return out;
}

function png(slice: Uint8Array, size: number, channels: number): string {
  return `data:image/png;base64,${renderSliceGrid(slice, 1, { size, channels }).toString('base64')}`;
}

async function section(record: LocalAuditRecord): Promise<string> {
  const head =
    `<h2>Audit ${escapeHtml(record.auditId)}${record.studyId ? ` (study ${escapeHtml(record.studyId)})` : ''}</h2>` +
    `<p>${record.createdAt}: ${record.flagged.length} of ${record.candidateCount} candidates above the threshold ` +
    `${record.threshold.toFixed(4)} (quantile ${record.referenceQuantile} of the held-out reference + margin ${record.margin}).</p>`;
  if (record.flagged.length === 0) return head + '<p>Nothing was flagged.</p>';
  const candidates = await SliceStoreReader.open(record.candidates).catch((error: Error) => {
    throw new Error(`audit ${record.auditId}: cannot open the candidate store (${error.message})`);
  });
  try {
    const privates = await SliceStoreReader.open(record.privateStore);
    try {
      const rows: string[] = [];
      for (const f of record.flagged) {
        const cand = await candidates.readIndices([f.candidate]);
        const priv = await privates.readIndices([f.privateIndex]);
        const subject = privates.meta.subjects.find(
          (s) => f.privateIndex >= s.first && f.privateIndex < s.first + s.count,
        );
        // Show the private slice the way it matched: the shift moved the candidate, so move the private slice back.
        const aligned = transformSlice(
          priv,
          privates.meta.size,
          privates.meta.channels.length,
          f.mirrored,
          -f.dx,
          -f.dy,
        );
        const where = subject
          ? `${subject.id}, axial ${subject.z[f.privateIndex - subject.first]}`
          : `slice ${f.privateIndex}`;
        rows.push(
          `<tr><td>#${f.candidate}</td><td class="score">${f.score.toFixed(4)}</td>` +
            `<td><img alt="candidate ${f.candidate}" src="${png(cand, candidates.meta.size, candidates.meta.channels.length)}"></td>` +
            `<td><img alt="private slice" src="${png(aligned, privates.meta.size, privates.meta.channels.length)}">` +
            `<div class="note">${escapeHtml(where)}${f.mirrored ? ', mirrored' : ''}${f.dx || f.dy ? `, shift (${-f.dx}, ${-f.dy}) px` : ''}</div></td></tr>`,
        );
      }
      return (
        head +
        '<table><thead><tr><th>candidate</th><th>score</th><th>candidate (T1, T2, FLAIR, T1ce, annotation)</th>' +
        '<th>nearest private training slice</th></tr></thead><tbody>' +
        rows.join('\n') +
        '</tbody></table>'
      );
    } finally {
      await privates.close();
    }
  } finally {
    await candidates.close();
  }
}

export async function renderReviewPage(records: readonly LocalAuditRecord[]): Promise<string> {
  const sections = await Promise.all(records.map(section));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedsynth memorization audit: local review</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.4em;vertical-align:top}.warn{background:#fee;border:2px solid #c00;padding:1em}
.score{font-family:monospace}.note{font-size:.85em;color:#555}img{image-rendering:pixelated}</style></head><body>
<h1>Memorization audit: local review</h1>
<p class="warn"><strong>This page contains private patient images.</strong> It was written on this site's own machine
from its local audit records and is never sent anywhere: keep it inside the hospital and delete it after review.
The coordinator received only the scores.</p>
${records.length === 0 ? '<p>No audit records in this state directory.</p>' : sections.join('\n')}
</body></html>
`;
}

export async function writeReviewPage(records: readonly LocalAuditRecord[], file: string): Promise<string> {
  await writeFile(file, await renderReviewPage(records), { mode: 0o600 });
  return file;
}
