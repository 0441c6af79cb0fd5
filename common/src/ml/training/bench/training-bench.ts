// Measures the training runtime on this machine: step time with 1 vs 2 data-parallel workers (same global batch)
// for the toy net and a mid-size conv net, and the all-reduce overhead per step for a 2M-parameter model.
// Run: npx tsc -b && node common/dist/ml/training/bench/training-bench.js
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startTraining, type TrainingResult } from '../run.js';
import type { TrainingSpec } from '../spec.js';
import { TOY_TASK_KIND, TOY_TASK_MODULE, type ToyConfig } from '../testing/toy-task.js';

interface Case {
  label: string;
  config: ToyConfig;
  batchSize: number;
  steps: number;
  warmup: number;
}

const CASES: Case[] = [
  { label: 'toy 8² 2→8→2 ch (298 params), batch 8', config: {}, batchSize: 8, steps: 80, warmup: 10 },
  {
    label: 'mid conv 64², 4 layers × 32 ch (22k params), batch 8',
    config: { size: 64, channels: 4, hidden: 32, layers: 4, classes: 4 },
    batchSize: 8,
    steps: 14,
    warmup: 4,
  },
  {
    label: 'toy + 2M extra params, batch 8',
    config: { extraParameters: 2_000_000 },
    batchSize: 8,
    steps: 30,
    warmup: 5,
  },
];

async function measure(c: Case, workers: number): Promise<{ msPerStep: number; result: TrainingResult }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedsynth-bench-'));
  try {
    const spec: TrainingSpec<ToyConfig> = {
      kind: TOY_TASK_KIND,
      config: { ...c.config, optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9, nesterov: true } },
      seed: 1,
      steps: c.steps,
      batchSize: c.batchSize,
      checkpointEvery: 0,
      checkpointDir: dir,
      workers,
      backend: 'wasm',
      taskModules: [TOY_TASK_MODULE],
    };
    const times: number[] = [];
    const run = startTraining(spec, { logger: () => {} });
    run.on('progress', () => times.push(performance.now()));
    const result = await run.done;
    // Median interval between progress events after the warm-up: robust to other load on a shared machine.
    const intervals = times.slice(c.warmup).map((time, i) => time - times[c.warmup - 1 + i]);
    intervals.sort((a, b) => a - b);
    const msPerStep = intervals[Math.floor(intervals.length / 2)];
    return { msPerStep, result };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const perStep = (total: number, steps: number) => (total / steps).toFixed(2);

console.log(`cores: ${os.availableParallelism()}, node ${process.version}`);
for (const c of CASES) {
  const one = await measure(c, 1);
  const two = await measure(c, 2);
  console.log(`\n${c.label}`);
  console.log(`  1 worker : ${one.msPerStep.toFixed(2)} ms/step (median after warm-up)`);
  console.log(
    `  2 workers: ${two.msPerStep.toFixed(2)} ms/step  (speed-up ${(one.msPerStep / two.msPerStep).toFixed(2)}x)`,
  );
  for (const [label, r] of [
    ['1w', one.result],
    ['2w', two.result],
  ] as const) {
    for (const w of r.workers) {
      const t = w.timing;
      console.log(
        `  ${label} worker ${w.worker} per step (ms): compute ${perStep(t.computeMs, t.steps)}, copy ${perStep(t.copyMs, t.steps)}, ` +
          `reduce ${perStep(t.reduceMs, t.steps)}, barrier wait ${perStep(t.waitMs, t.steps)}, optimizer ${perStep(t.optimizerMs, t.steps)}`,
      );
    }
  }
}

// The all-reduce alone (no tfjs): 2 threads exchanging a 2M-parameter gradient.
{
  const { Worker } = await import('node:worker_threads');
  const { createControlBuffer, exchangeBufferBytes } = await import('../allreduce.js');
  const parameterCount = 2_000_000;
  const workers = 2;
  const rounds = 60;
  const control = createControlBuffer(workers);
  const exchange = new SharedArrayBuffer(exchangeBufferBytes(parameterCount, workers));
  const started = performance.now();
  const timings = await Promise.all(
    Array.from(
      { length: workers },
      (_, worker) =>
        new Promise<{ writeMs: number; reduceMs: number; waitMs: number; rounds: number }>(
          (resolve, reject) => {
            const thread = new Worker(new URL('../testing/allreduce-test-worker.js', import.meta.url), {
              workerData: {
                control,
                exchange,
                parameterCount,
                workers,
                worker,
                rounds,
                parties: workers,
                report: 'timing',
              },
            });
            thread.once('message', resolve);
            thread.once('error', reject);
          },
        ),
    ),
  );
  console.log(
    `\nall-reduce alone, ${parameterCount} params, ${workers} threads, ${rounds} rounds (${(performance.now() - started).toFixed(0)} ms incl. start-up)`,
  );
  for (const [worker, t] of timings.entries()) {
    console.log(
      `  thread ${worker} per round (ms): write ${(t.writeMs / t.rounds).toFixed(2)}, reduce ${(t.reduceMs / t.rounds).toFixed(2)}, ` +
        `barrier wait ${(t.waitMs / t.rounds).toFixed(2)}`,
    );
  }
}
