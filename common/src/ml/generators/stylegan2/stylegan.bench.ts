// Timing of StyleGAN 2/3 on the chosen backend (in this process):
//   node common/dist/ml/generators/stylegan2/stylegan.bench.js [stylegan2|stylegan3] [paper|cpu|tiny] [batch]
//        [steps] [modConv=scaled|grouped|loop] [fir=slices|depthwise]
// A G+D step = D phase (G forward, D on fakes and reals, non-saturating loss, backward into D, Adam) then G phase
// (G forward, D, loss, backward through D into G, Adam); the first two steps are warm-up. Then the extra cost of
// an R1 step (D phase with the R1 penalty, a gradient of a gradient) and of a path-length step (StyleGAN2).
import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../../backend/index.js';
import { countParameters } from '../../layers/index.js';
import { createOptimizer } from '../../training/optimizers.js';
import type { DiscriminatorModel, GeneratorModel } from '../gan/types.js';
import { STYLEGAN3_PROFILES, buildStyleGan3 } from '../stylegan3/stylegan3.js';
import type { ModConvImpl } from './modulated-conv.js';
import { registerHigherOrderGradients } from '../gan/losses.js';
import { latents, realBatch } from './stylegan-spec-helpers.js';
import { STYLEGAN2_PROFILES, buildStyleGan2 } from './stylegan2.js';
import type { FirImpl } from './upfirdn.js';

const args = process.argv.slice(2);
const named = Object.fromEntries(
  args.filter((a) => a.includes('=')).map((a) => a.split('=') as [string, string]),
);
const [arch = 'stylegan2', profile = 'cpu', batchArg = '8', stepsArg = '5'] = args.filter(
  (a) => !a.includes('='),
);
const batch = Number(batchArg);
const steps = Number(stepsArg);
const modConvImpl = named['modConv'] as ModConvImpl | undefined;
const firImpl = named['fir'] as FirImpl | undefined;

const choice = await selectBackend({ prefer: 'auto', logger: () => {} });
registerHigherOrderGradients();
const { generator: g, discriminator: d } =
  arch === 'stylegan3'
    ? buildStyleGan3(STYLEGAN3_PROFILES[profile as 'cpu'], 1, { modConvImpl, firImpl })
    : buildStyleGan2(STYLEGAN2_PROFILES[profile as 'cpu'], 1, { modConvImpl });
const adam = { type: 'adamw', lr: 0.002, beta1: 0, beta2: 0.99, epsilon: 1e-8, weightDecay: 0 } as const;
const gOpt = createOptimizer(adam, g.variables);
const dOpt = createOptimizer(adam, d.variables);
const reals = realBatch(1, batch, g.resolution, g.channels);

function byName(
  model: { variables: Record<string, tf.Variable> },
  grads: tf.NamedTensorMap,
): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [name, variable] of Object.entries(model.variables)) {
    const grad = grads[variable.name];
    if (grad) out[name] = grad;
  }
  return out;
}

function phase(
  model: GeneratorModel | DiscriminatorModel,
  optimizer: ReturnType<typeof createOptimizer>,
  loss: () => tf.Scalar,
): void {
  const { value, grads } = tf.variableGrads(loss, Object.values(model.variables));
  value.dataSync();
  optimizer.apply(byName(model, grads), 0.002);
  tf.dispose([value, ...Object.values(grads)]);
}

function step(seed: number, extra?: 'r1' | 'pl'): void {
  const z = latents(seed, batch, g.latentDim);
  const options = { training: true, noiseSeed: seed };
  phase(d, dOpt, () => {
    const fakes = d.score(g.generate(z, options), true);
    let loss = tf.add(tf.mean(tf.softplus(fakes)), tf.mean(tf.softplus(tf.neg(d.score(reals, true)))));
    if (extra === 'r1') {
      const gradient = tf.grad((x: tf.Tensor) => tf.sum(d.score(x as tf.Tensor4D, true)))(reals);
      loss = tf.add(loss, tf.mul(tf.mean(tf.sum(tf.square(gradient), [1, 2, 3])), 5));
    }
    return loss as tf.Scalar;
  });
  phase(g, gOpt, () => {
    let loss = tf.mean(tf.softplus(tf.neg(d.score(g.generate(z, options), true))));
    if (extra === 'pl' && g.mapLatents && g.synthesize) {
      const half = Math.max(1, batch / 2);
      const ws = g.mapLatents(tf.slice(z, [0, 0], [half, -1]) as tf.Tensor2D, options);
      const y = tf.randomNormal([half, g.resolution, g.resolution, g.channels], 0, 1, 'float32', seed);
      const gw = tf.grad((w: tf.Tensor) => tf.sum(tf.mul(g.synthesize!(w as tf.Tensor3D, options), y)))(ws);
      loss = tf.add(loss, tf.mean(tf.square(tf.sqrt(tf.mean(tf.sum(tf.square(gw), 2), 1)))));
    }
    return loss as tf.Scalar;
  });
  z.dispose();
}

/** Median CPU time of a step (process user + system: wasm runs on one thread, so on an idle machine this is the
 * wall time; on a shared one it is far less disturbed by other processes), with the wall time beside it. */
function time(label: string, extra?: 'r1' | 'pl', count = steps): number {
  const cpu: number[] = [];
  const wall: number[] = [];
  const tensors: number[] = [];
  for (let i = 0; i < count + 2; i++) {
    const start = performance.now();
    const usage = process.cpuUsage();
    step(100 + i, extra);
    const used = process.cpuUsage(usage);
    if (i >= 2) {
      wall.push(performance.now() - start);
      cpu.push((used.user + used.system) / 1000);
    }
    tensors.push(tf.memory().numTensors);
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  console.log(
    `  ${label}: median CPU ${median(cpu).toFixed(0)} ms (min ${Math.min(...cpu).toFixed(0)}), wall ` +
      `${median(wall).toFixed(0)} ms, ${count} steps; tensors after each step ${[...new Set(tensors.slice(1))].join(', ')}`,
  );
  return median(cpu);
}

console.log(
  `${arch}/${profile} on ${choice.name}: G ${countParameters(g.variables)} parameters, D ${countParameters(d.variables)}; ` +
    `${g.resolution}² batch ${batch}, modConv ${modConvImpl ?? 'default'}, fir ${firImpl ?? 'default'}`,
);
const plain = time('G+D step');
const r1 = time('G+D step with R1', 'r1', Math.max(1, Math.ceil(steps / 2)));
console.log(
  `  R1 adds ${(r1 - plain).toFixed(0)} ms (every 16 steps: ${((r1 - plain) / 16).toFixed(0)} ms/step)`,
);
if (arch === 'stylegan2' && (modConvImpl ?? 'scaled') === 'scaled') {
  const pl = time('G+D step with path length', 'pl', Math.max(1, Math.ceil(steps / 2)));
  console.log(
    `  path length adds ${(pl - plain).toFixed(0)} ms (every 4 steps: ${((pl - plain) / 4).toFixed(0)} ms/step)`,
  );
}
