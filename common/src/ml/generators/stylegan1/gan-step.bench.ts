// Timing of a ProGAN / StyleGAN 1 training step (one D step with its penalty, one G step, Adam) on wasm:
//   node common/dist/ml/generators/stylegan1/gan-step.bench.js [paper|cpu|tiny] [batch] [steps]
// Also prints the parameter counts of every profile. The first step is a warm-up. wasm runs one thread, so this
// process's CPU time per step is what the step costs on an idle core (wall time grows with the machine's load).
import * as tf from '@tensorflow/tfjs';

import { countParameters } from '../../layers/index.js';
import { localGanStep, realBatch, useWasm } from '../progan/gan-spec-helpers.js';
import { PROGAN_PROFILES, buildProGan } from '../progan/index.js';
import { STYLEGAN1_PROFILES, buildStyleGan1, type StyleGan1Config } from './index.js';

type Profile = 'paper' | 'cpu' | 'tiny';
const [profile = 'cpu', batchArg = '8', stepsArg = '4'] = process.argv.slice(2) as [
  Profile?,
  string?,
  string?,
];
const batch = Number(batchArg);
const steps = Number(stepsArg);

await useWasm();

for (const name of ['paper', 'cpu', 'tiny'] as const) {
  for (const [label, pair] of [
    ['progan', () => buildProGan(PROGAN_PROFILES[name], 0)],
    ['stylegan1', () => buildStyleGan1(STYLEGAN1_PROFILES[name], 0)],
  ] as const) {
    const { generator, discriminator } = pair();
    const g = countParameters(generator.variables);
    const d = countParameters(discriminator.variables);
    console.log(`${label}/${name}: G ${g.toLocaleString('en')} parameters, D ${d.toLocaleString('en')}`);
    generator.dispose();
    discriminator.dispose();
  }
}

function median(times: number[]): string {
  const sorted = [...times].sort((a, b) => a - b);
  return `${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ms (min ${sorted[0]!.toFixed(0)}, max ${sorted[sorted.length - 1]!.toFixed(0)})`;
}

function time(label: string, run: (step: number) => void): void {
  const times: number[] = [];
  const cpuTimes: number[] = [];
  const counts: number[] = [];
  for (let step = 0; step <= steps; step++) {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    run(step);
    const cpu = process.cpuUsage(cpuStart);
    if (step > 0) {
      times.push(performance.now() - start);
      cpuTimes.push((cpu.user + cpu.system) / 1000);
    }
    counts.push(tf.memory().numTensors);
  }
  console.log(
    `${label}, batch ${batch}: per G+D step CPU ${median(cpuTimes)}, wall ${median(times)}, ${steps} steps; ` +
      `tensors after each step ${[...new Set(counts)].join(', ')}`,
  );
}

const size = PROGAN_PROFILES[profile].resolution;
const reals = realBatch(1, batch, size);
const optimizers = () => ({ g: tf.train.adam(0.001, 0, 0.99, 1e-8), d: tf.train.adam(0.001, 0, 0.99, 1e-8) });

{
  const { generator, discriminator } = buildProGan(PROGAN_PROFILES[profile], 0);
  const levels = generator.levels;
  for (const [level, alpha] of [
    [levels - 1, 1],
    [levels - 1, 0.5],
  ] as const) {
    generator.setGrowth({ level, alpha });
    discriminator.setGrowth({ level, alpha });
    const opt = optimizers();
    time(`progan/${profile} ${size}² level ${level} alpha ${alpha} (WGAN-GP)`, (step) =>
      localGanStep(generator, discriminator, opt, reals, { loss: 'wgan-gp', seed: step }),
    );
    opt.g.dispose();
    opt.d.dispose();
  }
  generator.dispose();
  discriminator.dispose();
}

for (const upsampling of ['bilinear', 'nearest-blur'] as const) {
  const config: StyleGan1Config = { ...STYLEGAN1_PROFILES[profile], upsampling };
  const { generator, discriminator } = buildStyleGan1(config, 0);
  const opt = optimizers();
  const z2 = tf.randomNormal([batch, config.latentDim], 0, 1, 'float32', 1) as tf.Tensor2D;
  time(`stylegan1/${profile} ${size}² ${upsampling} (non-saturating + R1, mixing, noise)`, (step) =>
    localGanStep(generator, discriminator, opt, reals, {
      loss: 'nonsaturating-r1',
      seed: step,
      generateOptions: () => ({
        training: true,
        noiseSeed: step,
        styleMixing: { latents: z2, crossover: 1 + (step % (generator.numStyleLayers - 1)) },
      }),
    }),
  );
  tf.dispose([z2]);
  opt.g.dispose();
  opt.d.dispose();
  generator.dispose();
  discriminator.dispose();
}
reals.dispose();
