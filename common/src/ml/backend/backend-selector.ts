// Picks the fastest tfjs backend this machine can run, at run time: tfjs-node-gpu (CUDA) -> tfjs-node
// (libtensorflow) -> wasm (XNNPACK + our training kernels) -> never the pure-JS cpu backend for training
// unless explicitly allowed (about 1000x slower on a U-Net step). The native packages are optional
// dependencies that download libtensorflow at install time, so they are imported dynamically and any
// failure is recorded as the reason they were skipped.
import { createRequire } from 'node:module';
import path from 'node:path';

import * as tf from '@tensorflow/tfjs';

import { registerTrainingGradients } from './training-gradients.js';
import { registerWasmTrainingKernels, registeredWasmTrainingKernels } from './wasm-training-kernels.js';

export type BackendCandidate = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendPreference = 'auto' | BackendCandidate;
export type BackendDevice = 'cuda' | 'cpu-native' | 'cpu-wasm' | 'cpu-js';

export const BACKEND_ENV_VAR = 'FEDSYNTH_TF_BACKEND';
const PREFERENCES: readonly BackendPreference[] = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];
const AUTO_ORDER: readonly BackendCandidate[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

export interface BackendAttempt {
  candidate: BackendCandidate;
  ok: boolean;
  /** Why it was chosen or skipped (for a skipped native package: the import error's first line). */
  reason: string;
}

export interface BackendChoice {
  /** The tfjs backend name now active: 'tensorflow', 'wasm' or 'cpu'. */
  name: string;
  candidate: BackendCandidate;
  device: BackendDevice;
  tfjsVersion: string;
  tried: BackendAttempt[];
  /** False for the pure-JS cpu backend unless allowCpuTraining was set. */
  trainingCapable: boolean;
  note: string;
}

export interface SelectBackendOptions {
  /** 'auto' (default) tries the candidates in order; a named backend is required and throws if it fails. */
  prefer?: BackendPreference;
  /** Let the pure-JS cpu backend count as training-capable (tests, tiny smoke runs). */
  allowCpuTraining?: boolean;
  /** Receives the one-line summary of the choice; console.info by default, `() => {}` to silence. */
  logger?: (msg: string) => void;
}

/** Side effects of backend selection, injectable so the selection logic can be tested without natives. */
export interface TfjsRuntime {
  /** Dynamic import of an optional package; rejects when it is missing or fails to load. */
  importModule(specifier: string): Promise<unknown>;
  /** The folder holding the installed tfjs-backend-wasm .wasm binaries. */
  wasmBinaryDir(): string;
  setBackend(name: string): Promise<boolean>;
  activeBackendName(): string;
  /** Whether the named backend has already been initialised (wasm paths can only be set before). */
  isBackendInitialised(name: string): boolean;
  /** Whether the active backend runs on a GPU (tfjs-node-gpu reports it; others do not). */
  isUsingGpuDevice(): boolean;
  env(name: string): string | undefined;
}

export class NodeTfjsRuntime implements TfjsRuntime {
  async importModule(specifier: string): Promise<unknown> {
    return import(specifier);
  }

  wasmBinaryDir(): string {
    // The package's main file lives in dist/ beside the .wasm binaries.
    const main = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm');
    return path.dirname(main) + path.sep;
  }

  async setBackend(name: string): Promise<boolean> {
    const ok = await tf.setBackend(name);
    await tf.ready();
    return ok;
  }

  activeBackendName(): string {
    return tf.getBackend();
  }

  isBackendInitialised(name: string): boolean {
    return tf.engine().registry[name] !== undefined;
  }

  isUsingGpuDevice(): boolean {
    return (tf.backend() as NativeBackend | undefined)?.isUsingGpuDevice === true;
  }

  env(name: string): string | undefined {
    return process.env[name];
  }
}

interface WasmModule {
  setWasmPaths(prefix: string): void;
}

interface NativeBackend {
  isUsingGpuDevice?: boolean;
}

/** The first line of an error, without the stack, for a one-line log. */
function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0]?.trim() || 'unknown error';
}

export function parseBackendPreference(value: string, source: string): BackendPreference {
  if ((PREFERENCES as readonly string[]).includes(value)) return value as BackendPreference;
  throw new Error(`${source}: unknown tfjs backend '${value}'; expected one of ${PREFERENCES.join(', ')}`);
}

export class BackendSelector {
  constructor(private readonly runtime: TfjsRuntime = new NodeTfjsRuntime()) {}

  async select(options: SelectBackendOptions = {}): Promise<BackendChoice> {
    const preference = this.preference(options);
    const candidates = preference === 'auto' ? AUTO_ORDER : [preference];
    // Backend-independent: core's Tile gradient is unusably slow on every backend.
    registerTrainingGradients();
    const tried: BackendAttempt[] = [];
    for (const candidate of candidates) {
      const attempt = await this.tryCandidate(candidate, options);
      tried.push({ candidate, ok: attempt.ok, reason: attempt.reason });
      if (!attempt.ok) continue;
      const choice = this.describeChoice(candidate, tried, options, attempt.device);
      (options.logger ?? console.info)(this.logLine(choice, preference));
      return choice;
    }
    const summary = tried.map((t) => `${t.candidate}: ${t.reason}`).join('; ');
    throw new Error(`no usable tfjs backend (${preference}): ${summary}`);
  }

  private preference(options: SelectBackendOptions): BackendPreference {
    if (options.prefer && options.prefer !== 'auto') return parseBackendPreference(options.prefer, 'prefer');
    const fromEnv = this.runtime.env(BACKEND_ENV_VAR)?.trim();
    if (fromEnv) return parseBackendPreference(fromEnv, BACKEND_ENV_VAR);
    return 'auto';
  }

  private async tryCandidate(
    candidate: BackendCandidate,
    options: SelectBackendOptions,
  ): Promise<{ ok: boolean; reason: string; device?: BackendDevice }> {
    try {
      switch (candidate) {
        case 'tensorflow-gpu':
        case 'tensorflow':
          return await this.tryNative(candidate);
        case 'wasm':
          return await this.tryWasm();
        case 'cpu':
          await this.activate('cpu');
          return {
            ok: true,
            reason: options.allowCpuTraining ? 'pure JS, allowed for training' : 'pure JS, inference only',
          };
      }
    } catch (error) {
      return { ok: false, reason: reasonOf(error) };
    }
  }

  private async tryNative(candidate: 'tensorflow-gpu' | 'tensorflow') {
    const specifier = candidate === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
    // Importing registers the 'tensorflow' backend (and loads libtensorflow, which is where installs break).
    await this.runtime.importModule(specifier);
    await this.activate('tensorflow');
    const usesGpu = this.runtime.isUsingGpuDevice();
    if (candidate === 'tensorflow-gpu' && !usesGpu) {
      return {
        ok: true,
        reason: `${specifier} loaded but found no CUDA device`,
        device: 'cpu-native' as const,
      };
    }
    return {
      ok: true,
      reason: `${specifier} loaded`,
      device: usesGpu ? ('cuda' as const) : ('cpu-native' as const),
    };
  }

  private async tryWasm() {
    const wasm = (await this.runtime.importModule('@tensorflow/tfjs-backend-wasm')) as WasmModule;
    if (!this.runtime.isBackendInitialised('wasm')) {
      wasm.setWasmPaths(this.runtime.wasmBinaryDir());
    }
    // Before the first use, so the engine runs the stock kernels' setup through ours.
    registerWasmTrainingKernels();
    await this.activate('wasm');
    return {
      ok: true,
      reason: `XNNPACK, ${registeredWasmTrainingKernels().length} training kernels registered`,
    };
  }

  private async activate(name: string): Promise<void> {
    const ok = await this.runtime.setBackend(name);
    if (!ok || this.runtime.activeBackendName() !== name) {
      throw new Error(`tf.setBackend('${name}') failed`);
    }
  }

  private describeChoice(
    candidate: BackendCandidate,
    tried: BackendAttempt[],
    options: SelectBackendOptions,
    nativeDevice: BackendDevice | undefined,
  ): BackendChoice {
    const base = { name: this.runtime.activeBackendName(), candidate, tfjsVersion: tf.version.tfjs, tried };
    switch (candidate) {
      case 'tensorflow-gpu':
      case 'tensorflow':
        return {
          ...base,
          device: nativeDevice ?? 'cpu-native',
          trainingCapable: true,
          note: nativeDevice === 'cuda' ? 'libtensorflow on CUDA' : 'libtensorflow on CPU (all cores)',
        };
      case 'wasm':
        return {
          ...base,
          device: 'cpu-wasm',
          trainingCapable: registeredWasmTrainingKernels().includes('Conv2DBackpropFilter'),
          note: 'XNNPACK, one thread in Node (more cores need worker threads); fedsynth training kernels registered',
        };
      case 'cpu':
        return {
          ...base,
          device: 'cpu-js',
          trainingCapable: options.allowCpuTraining === true,
          note: options.allowCpuTraining
            ? 'pure-JS backend forced for training: about 1000x slower than wasm on a U-Net step'
            : 'pure-JS backend: inference and tests only; training refused (set allowCpuTraining to force)',
        };
    }
  }

  private logLine(choice: BackendChoice, preference: BackendPreference): string {
    const skipped = choice.tried
      .filter((t) => !t.ok)
      .map((t) => `${t.candidate} skipped (${t.reason})`)
      .join('; ');
    const how = preference === 'auto' ? 'auto' : `requested ${preference}`;
    return (
      `tfjs backend: ${choice.name} [${choice.device}, tfjs ${choice.tfjsVersion}, ${how}]` +
      `${choice.trainingCapable ? '' : ' NOT training-capable'} - ${choice.note}` +
      (skipped ? `; ${skipped}` : '')
    );
  }
}

/** Selects and activates the fastest available tfjs backend (see BackendSelector). */
export async function selectBackend(options: SelectBackendOptions = {}): Promise<BackendChoice> {
  return new BackendSelector().select(options);
}
