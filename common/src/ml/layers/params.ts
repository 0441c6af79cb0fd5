// Named, seeded trainable variables for functional models. A model is built by handing a ParamFactory down
// its structure (`params.scope('enc1').scope('conv1')`); every variable it creates lands in one shared record
// under its slash-separated name ('enc1/conv1/kernel'), which is what the weights format and FedAvg see.
//
// Initial values are drawn in JS from an Rng forked by the variable's full name, so they depend only on
// (seed, name, shape, initialiser): not on the backend, not on creation order, and adding a layer elsewhere
// never changes the others' values.
import * as tf from '@tensorflow/tfjs';

import { createRng, type Rng } from '../../util/rng.js';

export type Initializer =
  /** He/Kaiming normal: std = gain / √fanIn, gain = √(2 / (1 + slope²)) for the LeakyReLU slope after it. */
  | { kind: 'he'; negativeSlope?: number }
  /** Glorot/Xavier uniform: U(-a, a), a = sqrt(6 / (fanIn + fanOut)). */
  | { kind: 'glorot' }
  /** Normal(0, std²); `truncated` redraws values beyond 2 std (tf.truncatedNormal's convention). */
  | { kind: 'normal'; std: number; truncated?: boolean }
  | { kind: 'zeros' }
  | { kind: 'ones' };

export const HE: Initializer = { kind: 'he' };
export const GLOROT: Initializer = { kind: 'glorot' };
export const ZEROS: Initializer = { kind: 'zeros' };
export const ONES: Initializer = { kind: 'ones' };

/** Fan-in and fan-out of a weight, for the scaled initialisers. */
export interface Fans {
  fanIn: number;
  fanOut: number;
}

/**
 * Default fans: the last axis is the output, the one before it the input, any leading axes the receptive
 * field (conv2d [kh, kw, in, out], dense [in, out]). Layers whose kernels are laid out otherwise
 * (conv2dTranspose) pass their own.
 */
export function defaultFans(shape: readonly number[]): Fans {
  if (shape.length === 0) return { fanIn: 1, fanOut: 1 };
  if (shape.length === 1) return { fanIn: shape[0]!, fanOut: shape[0]! };
  const receptive = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  return { fanIn: receptive * shape[shape.length - 2]!, fanOut: receptive * shape[shape.length - 1]! };
}

/** The initial values of one variable, deterministic for (rng, shape, initialiser). */
export function initialValues(
  init: Initializer,
  shape: readonly number[],
  rng: Rng,
  fans: Fans = defaultFans(shape),
): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(size);
  switch (init.kind) {
    case 'zeros':
      return values;
    case 'ones':
      return values.fill(1);
    case 'he': {
      const slope = init.negativeSlope ?? 0;
      const std = Math.sqrt(2 / (1 + slope * slope)) / Math.sqrt(fans.fanIn);
      for (let i = 0; i < size; i++) values[i] = rng.normal(0, std);
      return values;
    }
    case 'glorot': {
      const limit = Math.sqrt(6 / (fans.fanIn + fans.fanOut));
      for (let i = 0; i < size; i++) values[i] = rng.uniform(-limit, limit);
      return values;
    }
    case 'normal': {
      for (let i = 0; i < size; i++) {
        let z = rng.normal();
        while (init.truncated && Math.abs(z) > 2) z = rng.normal();
        values[i] = z * init.std;
      }
      return values;
    }
  }
}

/** Distinguishes the tf.Variable names of models built side by side (the engine requires unique names). */
let nextFactoryId = 0;

export class ParamFactory {
  private constructor(
    private readonly rootRng: Rng,
    private readonly prefix: string,
    private readonly tfNamePrefix: string,
    /** Shared by a factory and all its scopes. */
    readonly variables: Record<string, tf.Variable>,
  ) {}

  /**
   * A root factory. `label` only prefixes the engine-level tf.Variable names ('unet#3/enc1/conv1/kernel') so
   * two models with the same stable names can coexist; the record keys stay unprefixed.
   */
  static create(seed: number | string, label = 'model'): ParamFactory {
    return new ParamFactory(createRng(seed), '', `${label}#${nextFactoryId++}`, {});
  }

  /** A factory whose variables are named `<this prefix>/<name>/...`. */
  scope(name: string): ParamFactory {
    checkName(name);
    return new ParamFactory(this.rootRng, this.qualify(name), this.tfNamePrefix, this.variables);
  }

  /** Creates the trainable variable `<prefix>/<name>`. */
  variable(name: string, shape: readonly number[], init: Initializer, fans?: Fans): tf.Variable {
    checkName(name);
    const fullName = this.qualify(name);
    if (Object.hasOwn(this.variables, fullName)) {
      throw new Error(`ParamFactory: variable "${fullName}" is created twice`);
    }
    const values = initialValues(init, shape, this.rootRng.fork(fullName), fans);
    const initial = tf.tensor(values, [...shape], 'float32');
    // tf.variable shares the initial tensor's storage and takes its own reference, so ours is released here.
    const variable = tf.variable(initial, true, `${this.tfNamePrefix}/${fullName}`);
    initial.dispose();
    this.variables[fullName] = variable;
    return variable;
  }

  private qualify(name: string): string {
    return this.prefix ? `${this.prefix}/${name}` : name;
  }
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
    throw new Error(`ParamFactory: "${name}" is not a valid name part (letters, digits, _ . - only)`);
  }
}

/** Total number of scalar parameters. */
export function countParameters(variables: Record<string, tf.Variable>): number {
  return Object.values(variables).reduce((sum, variable) => sum + variable.size, 0);
}

/** Disposes every variable of a record (a model's dispose()). */
export function disposeVariables(variables: Record<string, tf.Variable>): void {
  for (const variable of Object.values(variables)) variable.dispose();
}
