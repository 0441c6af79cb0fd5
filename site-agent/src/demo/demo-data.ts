// The demo's private data: phantom BraTS cases for each site (real NIfTI files), and PNG previews of real slices for
// the report (made from the run folder's own copy of the data — the coordinator never sees them).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { renderSliceGrid } from '@fedsynth/common/imaging/index';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { buildSliceStore, type SlicePresetName, SliceStoreReader } from '@fedsynth/common/slices/index';

type Dims3 = [number, number, number];

export interface DemoSiteData {
  name: string;
  dir: string;
  cases: number;
}

export async function writeDemoSites(options: {
  out: string;
  sites: number;
  cases: number;
  siteSizes?: number[];
  seed: number;
  dims?: Dims3;
  onCase?: (done: number, total: number, what: string) => void;
}): Promise<DemoSiteData[]> {
  const manifest = await writePhantomSites({
    out: options.out,
    sites: options.sites,
    cases: options.cases,
    siteSizes: options.siteSizes,
    seed: options.seed,
    naming: '2023',
    dims: options.dims,
    onProgress: (e) => options.onCase?.(e.done, e.total, `${e.site}/${e.caseId}`),
  });
  return manifest.sites.map((s) => ({ name: s.name, dir: s.dir, cases: s.cases.length }));
}

/** Slices one site's cases (for the report's "real" preview only) and writes a PNG grid of a few of them. */
export async function realPreview(
  site: DemoSiteData,
  preset: SlicePresetName,
  workDir: string,
  png: string,
  count = 4,
): Promise<{ slices: number; png: string }> {
  const store = path.join(workDir, `${site.name}.${preset}.fss`);
  await mkdir(workDir, { recursive: true });
  await buildSliceStore({ dataDir: site.dir, out: store, preset, seed: 0 });
  const reader = await SliceStoreReader.open(store);
  try {
    const n = Math.min(count, reader.count);
    const step = Math.max(1, Math.floor(reader.count / Math.max(n, 1)));
    const picks = Array.from({ length: n }, (_, i) => i * step);
    await mkdir(path.dirname(png), { recursive: true });
    await writeFile(
      png,
      renderSliceGrid(await reader.readIndices(picks), picks.length, {
        size: reader.meta.size,
        channels: reader.meta.channels.length,
      }),
    );
    return { slices: reader.count, png };
  } finally {
    await reader.close();
  }
}

/** A PNG grid of the first `count` slices of a slice store file (a pooled synthetic blob). */
export async function storePreview(store: string, png: string, count = 6): Promise<number> {
  const reader = await SliceStoreReader.open(store);
  try {
    const n = Math.min(count, reader.count);
    const picks = Array.from({ length: n }, (_, i) => i);
    await mkdir(path.dirname(png), { recursive: true });
    await writeFile(
      png,
      renderSliceGrid(await reader.readIndices(picks), n, {
        size: reader.meta.size,
        channels: reader.meta.channels.length,
      }),
    );
    return reader.count;
  } finally {
    await reader.close();
  }
}
