// npm run bench:train — the U-Net (cpu profile) at 64² and 128²: training step (batch 8) and batch inference
// (batch 32) on the chosen backend, against the same architecture in PyTorch on CPU with the same thread count,
// measured in the same run.
import * as tf from '@tensorflow/tfjs';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { selectBackend } from '@fedsynth/common/ml/backend/index';
import { countParameters } from '@fedsynth/common/ml/layers/index';
import { UNET_PROFILES, buildUNet } from '@fedsynth/common/ml/segmentation/index';
import { startTraining } from '@fedsynth/common/ml/training/index';
import { repoRoot } from '@fedsynth/common/testing/paths';
import { BENCH_UNET_KIND, BENCH_UNET_MODULE } from './unet-bench-task.js';

const exec = promisify(execFile);
const THREADS = Number(process.env.BENCH_THREADS ?? Math.min(os.availableParallelism(), 2));
const STEPS = Number(process.env.BENCH_STEPS ?? 12);
const WARMUP = 3;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function trainMsPerStep(size: number, workers: number): Promise<{ ms: number; backend: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-bench-train-'));
  try {
    const stamps: number[] = [];
    const run = startTraining(
      {
        kind: BENCH_UNET_KIND,
        config: { size },
        seed: 1,
        steps: STEPS + WARMUP,
        batchSize: 8,
        checkpointEvery: 0,
        checkpointDir: dir,
        workers,
        taskModules: [BENCH_UNET_MODULE],
      },
      { logger: () => undefined },
    );
    run.on('progress', () => stamps.push(performance.now()));
    const result = await run.done;
    const intervals = stamps.slice(WARMUP).map((t, i) => t - stamps[WARMUP - 1 + i]!);
    return { ms: median(intervals), backend: result.backend.name };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function inferMsPerBatch(size: number): Promise<number> {
  const model = buildUNet({ ...UNET_PROFILES.cpu, inputSize: size }, 1);
  const x = tf.randomUniform([32, size, size, 4], -1, 1, 'float32', 1) as tf.Tensor4D;
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    const labels = tf.tidy(() => model.forward(x, false)[0]!.argMax(-1));
    await labels.data();
    labels.dispose();
    if (i > 0) times.push(performance.now() - t0);
  }
  x.dispose();
  model.dispose();
  return median(times);
}

async function torch(
  size: number,
  threads: number,
): Promise<{ train_ms: number; infer_ms: number; parameters: number; torch: string }> {
  const { stdout } = await exec('/usr/bin/python3', [
    path.join(repoRoot(), 'test', 'bench', 'unet_torch.py'),
    '--size',
    String(size),
    '--batch',
    '8',
    '--infer-batch',
    '32',
    '--threads',
    String(threads),
    '--steps',
    String(STEPS),
  ]);
  return JSON.parse(stdout);
}

const choice = await selectBackend({ logger: () => undefined });
const params = countParameters(buildUNet(UNET_PROFILES.cpu, 1).variables);
console.log(
  `bench:train — U-Net cpu profile (${params} parameters), ${os.availableParallelism()} cores, backend ${choice.name}, PyTorch with ${THREADS} threads`,
);
console.log('| size | what | fedsynth ms | PyTorch ms | PyTorch / fedsynth |');
console.log('|---|---|---|---|---|');
for (const size of [64, 128]) {
  const ours1 = await trainMsPerStep(size, 1);
  const oursN = await trainMsPerStep(size, THREADS);
  const infer = await inferMsPerBatch(size);
  const theirs = await torch(size, THREADS);
  const theirs1 = await torch(size, 1);
  const row = (what: string, ours: number, base: number) =>
    console.log(
      `| ${size}² | ${what} | ${ours.toFixed(0)} | ${base.toFixed(0)} | ${(base / ours).toFixed(2)}x |`,
    );
  row(`train step, batch 8, ${THREADS} workers vs ${THREADS} threads`, oursN.ms, theirs.train_ms);
  row('train step, batch 8, 1 worker vs 1 thread', ours1.ms, theirs1.train_ms);
  row(`inference, batch 32, 1 thread vs ${THREADS} threads`, infer, theirs.infer_ms);
  row('inference, batch 32, 1 thread vs 1 thread', infer, theirs1.infer_ms);
  console.log(
    `|  | images/s training (${THREADS} workers) | ${((8 * 1000) / oursN.ms).toFixed(1)} | ${((8 * 1000) / theirs.train_ms).toFixed(1)} | |`,
  );
}
console.log(
  'ratio > 1: fedsynth is faster; < 1: slower. The target is ≥ 1 for training at the same thread count.',
);
