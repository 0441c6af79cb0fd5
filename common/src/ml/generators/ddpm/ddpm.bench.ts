// Timing of the diffusion model:
//   node common/dist/ml/generators/ddpm/ddpm.bench.js \
//     [profile=cpu] [batch=8] [steps=8] [samples=16] [ddim=50] [workers=1]
// 1. Training steps through the training runtime ('ddpm' task, `workers` worker threads, the backend `auto`
//    picks) on a synthetic slice store of the profile's size: median of worker 0's step time (draw, forward,
//    loss, backward, all-reduce, Adam), the first two steps excluded as warm-up.
// 2. In this process: DDIM sampling of `samples` images in one batch with `ddim` steps, η = 0.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { SliceStoreWriter } from '../../../slices/slice-store.js';
import { createRng } from '../../../util/rng.js';
import { selectBackend } from '../../backend/index.js';
import { countParameters } from '../../layers/index.js';
import { startTraining } from '../../training/run.js';
import { buildDdpm, ddpmArchitecture, ddpmConfig, sampleDdpm, type DdpmProfile } from './ddpm.js';
import { DDPM_TASK_KIND, DDPM_TASK_MODULE, type DdpmTaskConfig } from './ddpm-task.js';

const [
  profileArg = 'cpu',
  batchArg = '8',
  stepsArg = '8',
  samplesArg = '16',
  ddimArg = '50',
  workersArg = '1',
] = process.argv.slice(2);
const profile = profileArg as DdpmProfile;
const batch = Number(batchArg);
const steps = Number(stepsArg);
const workers = Number(workersArg);
const config = ddpmConfig(profile);
const size = config.imageSize;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function writeStore(file: string): Promise<void> {
  const writer = await SliceStoreWriter.create(file, {
    preset: size === 256 ? 'paper' : size === 64 ? 'cpu64' : 'cpu32',
    scale: 'max',
    size,
    channels: ['t1', 't2', 'flair', 't1ce', 'seg'],
    dtype: 'uint8',
    layout: 'NHWC',
    annotation: { NCR: 51, ED: 102, ET: 204 },
    split: { seed: 1, testFraction: 0 },
    createdAt: new Date().toISOString(),
  });
  const rng = createRng('bench-store');
  const count = 32;
  const bytes = Uint8Array.from({ length: count * size * size * 5 }, (_, i) =>
    i % 5 === 4 ? [0, 51, 102, 204][rng.int(4)]! : rng.int(256),
  );
  await writer.addSubject(
    {
      id: 'bench',
      split: 'train',
      labelled: true,
      z: Array.from({ length: count }, (_, i) => i),
      sourceDims: [240, 240, 155],
      reference: {},
    },
    bytes,
  );
  await writer.close();
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-ddpm-bench-'));
try {
  const store = path.join(dir, 'store.fss');
  await writeStore(store);
  const stepMs: number[] = [];
  // Process CPU time at each progress event: on a machine shared with other jobs, CPU time per step is closer
  // to the uncontended step time than wall time (all threads of this process; the main thread is mostly
  // idle).
  const cpuMs: number[] = [];
  const result = await startTraining<DdpmTaskConfig>(
    {
      kind: DDPM_TASK_KIND,
      config: { architecture: ddpmArchitecture(profile), store },
      seed: 1,
      steps: steps + 2,
      batchSize: batch,
      checkpointEvery: 0,
      checkpointDir: path.join(dir, 'run'),
      workers,
      backend: 'auto',
      taskModules: [DDPM_TASK_MODULE],
    },
    {
      onProgress: (p) => {
        stepMs.push(p.stepMs);
        const usage = process.cpuUsage();
        cpuMs.push((usage.user + usage.system) / 1000);
      },
      logger: () => {},
    },
  ).done;
  const timed = stepMs.slice(2);
  console.log(
    `ddpm/${profile} training on ${result.backend.name}, ${workers} worker(s), ${size}² batch ${batch}: ` +
      `median ${median(timed).toFixed(0)} ms/step (min ${Math.min(...timed).toFixed(0)}, ` +
      `max ${Math.max(...timed).toFixed(0)}, ${timed.length} steps); process CPU ` +
      `${((cpuMs.at(-1)! - cpuMs[1]!) / (cpuMs.length - 2)).toFixed(0)} ms/step; losses ` +
      result.losses.map((loss) => loss.toFixed(3)).join(' '),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}

const sampleCount = Number(samplesArg);
const ddimSteps = Number(ddimArg);
if (sampleCount > 0) {
  const choice = await selectBackend({ prefer: 'auto', logger: () => {} });
  const model = buildDdpm(config, 1);
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  await sampleDdpm(model, {
    count: sampleCount,
    seed: 1,
    batchSize: sampleCount,
    sampler: { method: 'ddim', steps: ddimSteps },
  });
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  console.log(
    `ddpm/${profile} (${countParameters(model.variables)} parameters) DDIM-${ddimSteps} sampling ` +
      `on ${choice.name}: ` +
      `${sampleCount} images of ${size}² in one batch in ${(ms / 1000).toFixed(1)} s ` +
      `(${(ms / ddimSteps).toFixed(0)} ms per denoising step); process CPU ` +
      `${((cpu.user + cpu.system) / 1e6).toFixed(1)} s`,
  );
  model.dispose();
}
