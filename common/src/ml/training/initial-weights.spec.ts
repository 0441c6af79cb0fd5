// Training from given weights (a federated round continuing the global model): the run starts from the blob, not
// from the task's init; the EMA shadows start from the given EMA, else from the weights; a blob of another
// architecture is refused. Real worker threads on wasm, the toy tasks.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { decodeWeights, encodeWeights } from '../weights/index.js';

import { startTraining, TrainingWorkerError } from './run.js';
import { TOY_GAN_KIND, TOY_GAN_MODULE } from './testing/toy-gan-task.js';
import { maxAbsDifference, removeTempDirs, tensorsOf, toySpec } from './testing/training-test-helpers.js';

after(removeTempDirs);

const quiet = { logger: () => {} };

function toyGanSpec(steps: number, seed: number, emaBeta: number) {
  return toySpec({
    kind: TOY_GAN_KIND,
    config: { emaBeta, regEvery: 0 } as never,
    taskModules: [TOY_GAN_MODULE],
    steps,
    seed,
  });
}

describe('training from initial weights', () => {
  it('a 1-step run from weights W ends near W, not near a fresh init', async () => {
    const trained = await startTraining(toySpec({ steps: 30, seed: 7 }), quiet).done;
    const w = tensorsOf(trained.weightsBlob);
    const fromW = await startTraining(toySpec({ steps: 1, seed: 99 }), {
      ...quiet,
      initialWeights: trained.weightsBlob,
    }).done;
    const fresh = await startTraining(toySpec({ steps: 1, seed: 99 }), quiet).done;
    const nearW = maxAbsDifference(tensorsOf(fromW.weightsBlob), w);
    const freshToW = maxAbsDifference(tensorsOf(fresh.weightsBlob), w);
    assert.ok(nearW > 0, 'one step moved the weights');
    assert.ok(
      nearW < freshToW / 5,
      `from W: ${nearW} away from W; a fresh init after the same step: ${freshToW}`,
    );
    // the first step's loss is W's loss level, not an untrained net's
    assert.ok(fromW.losses[0]! < fresh.losses[0]!, `loss ${fromW.losses[0]} vs fresh ${fresh.losses[0]}`);
  });

  it('EMA shadows start from the given EMA, else from the given weights (β = 1 keeps them as they start)', async () => {
    const base = await startTraining(toyGanSpec(6, 3, 0.5), quiet).done;
    const g = decodeWeights(base.weightsBlob)
      .tensors.filter((t) => t.name.startsWith('G/'))
      .map((t) => ({ ...t, name: t.name.slice(2) }));
    assert.notDeepEqual(
      g.map((t) => [...t.data]),
      [[1], [0]],
      'G moved away from its init',
    );
    const fromWeights = await startTraining(toyGanSpec(1, 4, 1), {
      ...quiet,
      initialWeights: base.weightsBlob,
    }).done;
    assert.deepEqual(tensorsOf(fromWeights.emaWeightsBlob!), g);

    const givenEma = [
      { name: 'a', shape: [1], dtype: 'float32' as const, data: Float32Array.of(5) },
      { name: 'b', shape: [1], dtype: 'float32' as const, data: Float32Array.of(-6) },
    ];
    const emaBlob = encodeWeights(givenEma, { architecture: { name: 'toy-gan-generator', config: {} } });
    const fromEma = await startTraining(toyGanSpec(1, 4, 1), {
      ...quiet,
      initialWeights: base.weightsBlob,
      initialEma: emaBlob,
    }).done;
    assert.deepEqual(
      tensorsOf(fromEma.emaWeightsBlob!).map((t) => [...t.data]),
      [[5], [-6]],
    );
  });

  it('refuses weights of another architecture with a clear error', async () => {
    const gan = await startTraining(toyGanSpec(1, 3, 0.5), quiet).done;
    await assert.rejects(
      startTraining(toySpec({ steps: 1 }), { ...quiet, initialWeights: gan.weightsBlob }).done,
      (error: unknown) =>
        error instanceof TrainingWorkerError &&
        /initial weights are for \["toy-gan".*the task built \["toy-conv"/.test(error.message) &&
        (error.cause as { name?: string }).name === 'WeightsMismatchError',
    );
  });
});
