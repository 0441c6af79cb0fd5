// ms per 'gan' training step with the tiny DCGAN test architecture, 1 vs 2 workers, on a synthetic slice store:
//   node common/dist/ml/generators/gan/gan-step.bench.js [resolution=32] [width=32] [batch=16] [steps=12]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startTraining } from '../../training/run.js';

import { ganSpec, writeTinySliceStore } from './testing/gan-test-helpers.js';

const [resolution = 32, width = 32, batchSize = 16, steps = 12] = process.argv.slice(2).map(Number);
const dir = mkdtempSync(path.join(os.tmpdir(), 'fedsynth-gan-bench-'));
try {
  const store = await writeTinySliceStore(dir, resolution);
  for (const style of [false, true]) {
    for (const workers of [1, 2]) {
      const times: { step: number; ms: number; phases: string[] }[] = [];
      const spec = ganSpec(store, path.join(dir, `run-${style}-${workers}`), {
        steps,
        batchSize,
        workers,
        config: {
          architecture: { name: 'tiny-dcgan', config: { resolution, latentDim: width, width, style } },
          lazyRegInterval: 4,
        },
      });
      const result = await startTraining(spec, {
        logger: () => {},
        onProgress: (p) => times.push({ step: p.step, ms: p.stepMs, phases: Object.keys(p.phases ?? {}) }),
      }).done;
      const steady = times.slice(2);
      const plain = steady.filter((t) => t.phases.length === (style ? 2 : 2));
      const mean = (list: typeof steady) => list.reduce((a, b) => a + b.ms, 0) / Math.max(list.length, 1);
      const timing = result.workers[0]!.timing;
      console.log(
        `${style ? 'style' : 'dcgan'} ${resolution}² width ${width} batch ${batchSize}, ${workers} worker(s): ` +
          `${mean(steady).toFixed(1)} ms/step over steps 3-${steps} (D+G only: ${mean(plain).toFixed(1)} ms), ` +
          `compute ${(timing.computeMs / timing.steps).toFixed(1)}, wait ${(timing.waitMs / timing.steps).toFixed(1)}, ` +
          `optimizer+EMA ${(timing.optimizerMs / timing.steps).toFixed(1)} ms/step (worker 0, all steps)`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
