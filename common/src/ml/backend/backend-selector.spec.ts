// Backend selection: the real machine (no native tfjs packages, so wasm) and a fake runtime for the branches
// this machine cannot reach (a loadable tfjs-node-gpu, environment overrides).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { describeBackend, MIN_TRAINING_GFLOPS } from './backend-doctor.js';
import { BACKEND_ENV_VAR, BackendSelector, NodeTfjsRuntime, selectBackend } from './backend-selector.js';
import { registeredWasmTrainingKernels } from './wasm-training-kernels.js';

const quiet = (): void => undefined;

/** The real runtime with the parts this machine cannot provide replaced. */
class FakeRuntime extends NodeTfjsRuntime {
  readonly imported: string[] = [];
  private active = 'none';

  constructor(
    private readonly loadable: Record<string, boolean>,
    private readonly environment: Record<string, string> = {},
    private readonly gpu = false,
  ) {
    super();
  }

  override async importModule(specifier: string): Promise<unknown> {
    this.imported.push(specifier);
    if (!this.loadable[specifier]) throw new Error(`Cannot find package '${specifier}'\n    at stack`);
    return specifier.endsWith('wasm') ? { setWasmPaths: () => undefined } : {};
  }

  override async setBackend(name: string): Promise<boolean> {
    this.active = name;
    return true;
  }

  override activeBackendName(): string {
    return this.active;
  }

  override isUsingGpuDevice(): boolean {
    return this.gpu && this.active === 'tensorflow';
  }

  override env(name: string): string | undefined {
    return this.environment[name];
  }
}

describe('selectBackend on this machine', () => {
  it('auto picks wasm, records why the native packages were skipped, and logs one line', async () => {
    const lines: string[] = [];
    const choice = await selectBackend({ prefer: 'auto', logger: (line) => lines.push(line) });
    assert.equal(choice.name, 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.equal(choice.device, 'cpu-wasm');
    assert.equal(choice.trainingCapable, true);
    assert.equal(choice.tfjsVersion, tf.version.tfjs);
    assert.deepEqual(
      choice.tried.map((t) => [t.candidate, t.ok]),
      [
        ['tensorflow-gpu', false],
        ['tensorflow', false],
        ['wasm', true],
      ],
    );
    assert.match(choice.tried[0]?.reason ?? '', /tfjs-node-gpu/);
    assert.match(choice.tried[1]?.reason ?? '', /tfjs-node/);
    assert.ok(registeredWasmTrainingKernels().includes('Conv2DBackpropFilter'));
    assert.equal(lines.length, 1);
    assert.ok(!lines[0]?.includes('\n'));
    assert.match(lines[0] ?? '', /wasm.*tensorflow-gpu skipped.*tensorflow skipped/);
  });

  it('forcing cpu without allowCpuTraining marks it not training-capable', async () => {
    const choice = await selectBackend({ prefer: 'cpu', logger: quiet });
    assert.equal(choice.name, 'cpu');
    assert.equal(choice.device, 'cpu-js');
    assert.equal(choice.trainingCapable, false);
    assert.deepEqual(
      choice.tried.map((t) => t.candidate),
      ['cpu'],
    );
    const allowed = await selectBackend({ prefer: 'cpu', allowCpuTraining: true, logger: quiet });
    assert.equal(allowed.trainingCapable, true);
  });

  it('a required native backend that cannot load is an error naming the reason', async () => {
    // Missing package ("Cannot find package") or a package whose libtensorflow binding failed to install.
    await assert.rejects(
      selectBackend({ prefer: 'tensorflow', logger: quiet }),
      /^Error: no usable tfjs backend \(tensorflow\): tensorflow: .*(tfjs-node|tfjs_binding)/,
    );
  });

  it('describeBackend measures a conv step and calls wasm training usable', async () => {
    const choice = await selectBackend({ prefer: 'wasm', logger: quiet });
    const description = await describeBackend({ choice, probeSteps: 3 });
    assert.equal(description.backend, 'wasm');
    assert.equal(description.wasm?.simd, true);
    assert.equal(description.versions['tfjs-backend-wasm'], tf.version.tfjs);
    assert.ok(description.convProbe.msPerStep > 0);
    assert.ok(description.convProbe.gflops >= MIN_TRAINING_GFLOPS, description.verdict);
    assert.equal(description.trainingUsable, true);
  });

  it('describeBackend on the forced cpu backend says it is not set up for training', async () => {
    const choice = await selectBackend({ prefer: 'cpu', logger: quiet });
    const description = await describeBackend({
      choice,
      probe: { batch: 1, size: 6, channels: 2 },
      probeSteps: 1,
    });
    assert.equal(description.trainingUsable, false);
    assert.match(description.verdict, /not set up for training/);
    await selectBackend({ prefer: 'wasm', logger: quiet });
  });
});

describe('BackendSelector with a fake runtime', () => {
  it('prefers tfjs-node-gpu and reports CUDA when it loads on a GPU', async () => {
    const runtime = new FakeRuntime({ '@tensorflow/tfjs-node-gpu': true }, {}, true);
    const choice = await new BackendSelector(runtime).select({ logger: quiet });
    assert.equal(choice.name, 'tensorflow');
    assert.equal(choice.candidate, 'tensorflow-gpu');
    assert.equal(choice.device, 'cuda');
    assert.equal(choice.trainingCapable, true);
    assert.deepEqual(runtime.imported, ['@tensorflow/tfjs-node-gpu']);
  });

  it('falls back to tfjs-node (cpu-native) when the GPU package is missing', async () => {
    const runtime = new FakeRuntime({ '@tensorflow/tfjs-node': true });
    const choice = await new BackendSelector(runtime).select({ logger: quiet });
    assert.equal(choice.candidate, 'tensorflow');
    assert.equal(choice.device, 'cpu-native');
    assert.deepEqual(
      choice.tried.map((t) => [t.candidate, t.ok, t.reason]),
      [
        ['tensorflow-gpu', false, "Cannot find package '@tensorflow/tfjs-node-gpu'"],
        ['tensorflow', true, '@tensorflow/tfjs-node loaded'],
      ],
    );
  });

  it(`follows ${BACKEND_ENV_VAR} unless the caller names a backend`, async () => {
    const runtime = new FakeRuntime({ '@tensorflow/tfjs-node': true }, { [BACKEND_ENV_VAR]: 'cpu' });
    const fromEnv = await new BackendSelector(runtime).select({ logger: quiet });
    assert.equal(fromEnv.candidate, 'cpu');
    assert.equal(fromEnv.trainingCapable, false);
    const explicit = await new BackendSelector(runtime).select({ prefer: 'tensorflow', logger: quiet });
    assert.equal(explicit.candidate, 'tensorflow');
  });

  it(`rejects an unknown ${BACKEND_ENV_VAR} value`, async () => {
    const runtime = new FakeRuntime({}, { [BACKEND_ENV_VAR]: 'webgpu' });
    await assert.rejects(
      new BackendSelector(runtime).select({ logger: quiet }),
      /FEDSYNTH_TF_BACKEND: unknown tfjs backend 'webgpu'/,
    );
  });
});
