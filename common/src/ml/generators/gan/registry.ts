// The GAN architecture registry: each architecture module (progan, stylegan1, stylegan2, stylegan3) calls
// registerGanArchitecture at import time; the 'gan' training task and sampling look architectures up by name.
// Like the training task registry, the table lives on globalThis under a registered symbol so a second copy of
// the module graph (a worker importing through another path) still sees one table.
import type { ModelArchitecture } from '../../model.js';
import { assignWeights, decodeWeights, WeightsMismatchError } from '../../weights/index.js';

import type { GanArchitecture, GanProfileName, GeneratorModel } from './types.js';

const REGISTRY_KEY = Symbol.for('fedsynth.gan.architectures');

function registry(): Map<string, GanArchitecture> {
  const holder = globalThis as { [REGISTRY_KEY]?: Map<string, GanArchitecture> };
  holder[REGISTRY_KEY] ??= new Map();
  return holder[REGISTRY_KEY];
}

/**
 * Registers an architecture under `name` (e.g. 'stylegan2'). Registering the same build function again is
 * harmless; a different entry for a taken name throws.
 */
export function registerGanArchitecture<Config extends Record<string, unknown>>(
  name: string,
  entry: Omit<GanArchitecture<Config>, 'name'> & { name?: string },
): void {
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(name)) {
    throw new Error(
      `registerGanArchitecture: bad name ${JSON.stringify(name)} (lower-case letters, digits, -)`,
    );
  }
  if (entry.name !== undefined && entry.name !== name) {
    throw new Error(`registerGanArchitecture: entry is named '${entry.name}', registered as '${name}'`);
  }
  const existing = registry().get(name);
  if (existing !== undefined) {
    // The same module evaluated twice (another path to it) registers the same build function: harmless.
    if (existing.build === (entry.build as unknown)) return;
    throw new Error(`registerGanArchitecture: '${name}' is already registered by another module`);
  }
  for (const profile of ['paper', 'cpu', 'tiny'] as const) {
    if (typeof entry.profiles?.[profile] !== 'object') {
      throw new Error(`registerGanArchitecture: '${name}' has no '${profile}' profile`);
    }
  }
  if (entry.loss !== 'wgan-gp' && entry.loss !== 'nonsaturating-r1') {
    throw new Error(`registerGanArchitecture: '${name}' has unknown loss ${JSON.stringify(entry.loss)}`);
  }
  registry().set(name, { ...entry, name } as unknown as GanArchitecture);
}

export function registeredGanArchitectures(): string[] {
  return [...registry().keys()].sort();
}

/** The entry registered as `name`; the error lists what is registered (import the architecture's module). */
export function ganArchitecture(name: string): GanArchitecture {
  const entry = registry().get(name);
  if (entry === undefined) {
    const known = registeredGanArchitectures();
    throw new Error(
      `unknown GAN architecture '${name}' (registered: ${known.length > 0 ? known.join(', ') : 'none'}; ` +
        'import the architecture module, e.g. generators/stylegan2/index.js, to register it)',
    );
  }
  return entry;
}

/** An architecture's config: an explicit one, else the named profile (default 'cpu'). */
export function ganConfig(
  name: string,
  selection: { config?: Record<string, unknown>; profile?: GanProfileName } = {},
): Record<string, unknown> {
  const entry = ganArchitecture(name);
  if (selection.config !== undefined) return selection.config;
  const profile = selection.profile ?? 'cpu';
  const config = entry.profiles[profile];
  if (config === undefined) throw new Error(`GAN architecture '${name}' has no profile '${profile}'`);
  return structuredClone(config);
}

/** A generator alone for `architecture` ({ name, config } as the generator reports it). */
export function buildGenerator(architecture: ModelArchitecture, seed = 0): GeneratorModel {
  const entry = ganArchitecture(architecture.name);
  if (entry.buildGenerator) return entry.buildGenerator(architecture.config, seed);
  const { generator, discriminator } = entry.build(architecture.config, seed);
  discriminator.dispose();
  return generator;
}

/**
 * A generator rebuilt from a fedsynth-weights blob whose architecture is a generator's (the 'gan' task's
 * emaWeightsBlob, or a site's uploaded generator). The architecture's module must have been imported.
 */
export function loadGenerator(blob: Uint8Array, source = 'generator weights'): GeneratorModel {
  const { manifest, tensors } = decodeWeights(blob, source);
  const generator = buildGenerator(manifest.architecture, 0);
  try {
    assignWeights(generator.variables, tensors);
  } catch (error) {
    generator.dispose();
    if (error instanceof WeightsMismatchError) {
      throw new WeightsMismatchError(`${source}: ${error.message}`);
    }
    throw error;
  }
  return generator;
}
