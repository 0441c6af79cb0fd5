// Training-step timing of the segmenters on the chosen backend:
//   node common/dist/ml/segmentation/segmenter-step.bench.js [unet|swin] [paper|cpu|tiny] [batch] [steps]
// One step = forward (training mode) + loss + backward + SGD Nesterov update; the first two steps are
// warm-up.
import * as tf from '@tensorflow/tfjs';

import { selectBackend } from '../backend/index.js';
import { countParameters } from '../layers/index.js';
import type { Segmenter } from '../model.js';
import { phantomBatch, trainStep } from './segmentation-spec-helpers.js';
import { SWIN_PROFILES, buildSwinSegmenter, type SwinProfile } from './swin.js';
import { UNET_PROFILES, buildUNet, type UNetProfile } from './unet.js';

const [architecture = 'unet', profile = 'cpu', batchArg = '8', stepsArg = '10'] = process.argv.slice(2);
const batch = Number(batchArg);
const steps = Number(stepsArg);

const choice = await selectBackend({ prefer: 'auto' });
let model: Segmenter;
let size: number;
if (architecture === 'swin') {
  const config = SWIN_PROFILES[profile as SwinProfile];
  model = buildSwinSegmenter(config, 1);
  size = config.inputSize;
} else {
  const config = UNET_PROFILES[profile as UNetProfile];
  model = buildUNet(config, 1);
  size = config.inputSize;
}
const { images, labels } = phantomBatch(1, batch, size);
const optimizer = tf.train.momentum(0.01, 0.99, true);
const times: number[] = [];
for (let step = 0; step < steps + 2; step++) {
  const start = performance.now();
  trainStep(model, optimizer, images, labels);
  if (step >= 2) times.push(performance.now() - start);
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)]!;
console.log(
  `${architecture}/${profile} on ${choice.name}: ${countParameters(model.variables)} parameters, ` +
    `${size}² batch ${batch}: median ${median.toFixed(0)} ms/step (min ${times[0]!.toFixed(0)}, ` +
    `max ${times[times.length - 1]!.toFixed(0)}, ${steps} steps)`,
);
tf.dispose([images, labels]);
optimizer.dispose();
model.dispose();
