// Transfer benchmark, one site → coordinator transfer of a random file over socket.io on loopback:
//   node [--expose-gc] common/dist/transfer/transfer-memory.bench.js [sizeMiB=1024] [--gc] [--chunk KiB] [--window n]
// Prints throughput and RSS (baseline, peak, growth) as JSON. `--gc` (needs --expose-gc) collects after every chunk.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { measureTransfer } from './transfer-measure.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { gc: { type: 'boolean' }, chunk: { type: 'string' }, window: { type: 'string' } },
});
const sizeMiB = Number(positionals[0] ?? 1024);
const dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-transfer-bench-'));
try {
  const m = await measureTransfer({
    dir,
    sizeBytes: sizeMiB * 1024 * 1024,
    chunkSize: values.chunk ? Number(values.chunk) * 1024 : undefined,
    window: values.window ? Number(values.window) : undefined,
    gcEachChunk: values.gc ?? false,
  });
  console.log(JSON.stringify({ ...m, node: process.version, cpus: os.cpus().length }, null, 2));
} finally {
  await rm(dir, { recursive: true, force: true });
}
