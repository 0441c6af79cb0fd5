// Between a functional model's named tf.Variables and WeightTensors (what the weights blob stores).

import * as tf from '@tensorflow/tfjs';

import { WeightsMismatchError, weightTensorProblem, type WeightDtype, type WeightTensor } from './format.js';

/**
 * Snapshots variables as WeightTensors sorted by name (code-unit order, locale-independent). A record's keys are
 * the names; an array uses each variable's own name. Data is always copied: the cpu backend's dataSync returns
 * the tensor's own storage, which must not be shared with anything that may be mutated or outlive it.
 */
export function variablesToWeights(variables: Record<string, tf.Tensor> | tf.Variable[]): WeightTensor[] {
  const entries: [string, tf.Tensor][] = Array.isArray(variables)
    ? variables.map((variable) => [variable.name, variable])
    : Object.entries(variables);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.map(([name, tensor], index) => {
    if (index > 0 && entries[index - 1][0] === name) {
      throw new WeightsMismatchError(`variablesToWeights: two variables are named "${name}"`);
    }
    if (tensor.dtype !== 'float32' && tensor.dtype !== 'int32') {
      throw new WeightsMismatchError(
        `variablesToWeights: variable "${name}" has dtype ${tensor.dtype}; weights support float32 and int32`,
      );
    }
    const data = (tensor.dataSync() as Float32Array | Int32Array).slice();
    return { name, shape: [...tensor.shape], dtype: tensor.dtype, data };
  });
}

/**
 * Assigns weights to a model's variables, all or nothing: names, shapes and dtypes must match exactly, otherwise
 * nothing is assigned and the error lists every missing, unexpected and mismatched name. No tensors leak.
 */
export function assignWeights(
  variables: Record<string, tf.Variable>,
  tensors: readonly WeightTensor[],
): void {
  const byName = new Map<string, WeightTensor>();
  const problems: string[] = [];
  for (const tensor of tensors) {
    const problem = weightTensorProblem(tensor);
    if (problem) problems.push(problem);
    else if (byName.has(tensor.name)) problems.push(`tensor "${tensor.name}" appears twice`);
    else byName.set(tensor.name, tensor);
  }
  const missing = Object.keys(variables).filter(
    (name) => !byName.has(name) && !hasBrokenTensor(tensors, name),
  );
  const unexpected = [...byName.keys()].filter((name) => !Object.hasOwn(variables, name));
  const mismatched: string[] = [];
  for (const [name, variable] of Object.entries(variables)) {
    const tensor = byName.get(name);
    if (tensor && (!sameShape(variable.shape, tensor.shape) || variable.dtype !== tensor.dtype)) {
      mismatched.push(
        `"${name}" (model ${describe(variable.shape, variable.dtype)}, weights ${describe(tensor.shape, tensor.dtype)})`,
      );
    }
  }
  if (missing.length > 0) problems.push(`missing from the weights: ${quoteAll(missing)}`);
  if (unexpected.length > 0) problems.push(`not in the model: ${quoteAll(unexpected)}`);
  if (mismatched.length > 0) problems.push(`shape or dtype differs: ${mismatched.join(', ')}`);
  if (problems.length > 0) {
    throw new WeightsMismatchError(`assignWeights: weights do not fit the model; ${problems.join('; ')}`);
  }

  tf.tidy(() => {
    for (const [name, variable] of Object.entries(variables)) {
      const { data, shape, dtype } = byName.get(name)!;
      // Copy: tf.tensor keeps the array it is given (cpu; tfjs-node until first use), and `data` may be a view
      // into a blob buffer that its owner reuses.
      variable.assign(tf.tensor(data.slice(), shape, dtype));
    }
  });
}

function hasBrokenTensor(tensors: readonly WeightTensor[], name: string): boolean {
  return tensors.some((tensor) => tensor.name === name && weightTensorProblem(tensor) !== undefined);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((size, index) => size === b[index]);
}

function describe(shape: readonly number[], dtype: WeightDtype | string): string {
  return `[${shape.join(', ')}] ${dtype}`;
}

function quoteAll(names: string[]): string {
  return names.map((name) => `"${name}"`).join(', ');
}
