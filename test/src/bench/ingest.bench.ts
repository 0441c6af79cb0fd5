// npm run bench:ingest — read + check + paper-preset slicing of BraTS cases, ours against nibabel + numpy.
// Data: the real BraTS 2023 sample plus full-size phantom cases, so sizes and codecs are those of real BraTS.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { writePhantomSites } from '@fedsynth/common/phantom/index';
import { buildSliceStore } from '@fedsynth/common/slices/index';
import { repoRoot, sharedDataFile } from '@fedsynth/common/testing/paths';

const exec = promisify(execFile);
const PHANTOM_CASES = Number(process.env.BENCH_CASES ?? 7);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-bench-ingest-'));
  try {
    const data = path.join(work, 'data');
    process.stderr.write(`bench:ingest: writing ${PHANTOM_CASES} full-size phantom cases...\n`);
    const manifest = await writePhantomSites({
      out: path.join(work, 'phantom'),
      sites: 1,
      cases: PHANTOM_CASES,
      seed: 1,
      naming: '2021',
    });
    await cp(manifest.sites[0]!.dir, data, { recursive: true });
    await cp(sharedDataFile('brats-sample', 'BraTS-GLI-00000-000'), path.join(data, 'BraTS-GLI-00000-000'), {
      recursive: true,
    });
    const caseDirs = (await readdir(data)).map((d) => path.join(data, d)).sort();
    const bytes = await dirBytes(data);
    const cases = caseDirs.length;

    const ours: number[] = [];
    const theirs: number[] = [];
    let ourSlices = 0;
    let theirSlices = 0;
    for (let r = 0; r < REPEATS; r++) {
      const t0 = process.hrtime.bigint();
      const summary = await buildSliceStore({
        dataDir: data,
        out: path.join(work, 'out.fss'),
        preset: 'paper',
      });
      ours.push(Number(process.hrtime.bigint() - t0) / 1e9);
      ourSlices = summary.slices;
      if (summary.skipped.length > 0) throw new Error(`skipped: ${JSON.stringify(summary.skipped)}`);
      const { stdout } = await exec(
        '/usr/bin/python3',
        [path.join(repoRoot(), 'test', 'bench', 'ingest_baseline.py'), ...caseDirs],
        {
          maxBuffer: 1 << 20,
        },
      );
      const baseline = JSON.parse(stdout) as { slices: number; seconds: number };
      theirs.push(baseline.seconds);
      theirSlices = baseline.slices;
    }
    if (ourSlices !== theirSlices)
      throw new Error(`slice counts differ: ours ${ourSlices}, nibabel+numpy ${theirSlices}`);
    const ourS = median(ours);
    const theirS = median(theirs);
    const mb = bytes / 1e6;
    const rows = [
      ['implementation', 'median s', 'cases/s', 'MB/s (gz on disk)', 'slices'],
      [
        'fedsynth (Node, zlib threadpool)',
        ourS.toFixed(2),
        (cases / ourS).toFixed(2),
        (mb / ourS).toFixed(1),
        String(ourSlices),
      ],
      [
        'nibabel + numpy (python3)',
        theirS.toFixed(2),
        (cases / theirS).toFixed(2),
        (mb / theirS).toFixed(1),
        String(theirSlices),
      ],
    ];
    console.log(
      `bench:ingest — ${cases} cases (${PHANTOM_CASES} phantom + 1 real BraTS 2023), ${mb.toFixed(0)} MB gz, ${REPEATS} runs, ${os.cpus().length} cores`,
    );
    for (const row of rows) console.log(`| ${row.join(' | ')} |`);
    console.log(
      `ratio: fedsynth is ${(theirS / ourS).toFixed(2)}x the speed of nibabel + numpy (target ≥ 2x)`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
