// The hand-written GroupNorm against the layer kit's autodiff one: values and all three gradients.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { ParamFactory, createGroupNorm, disposeVariables, groupNorm } from '../../layers/index.js';
import { randomImages, useWasm } from './ddpm-spec-helpers.js';
import { fastGroupNorm } from './group-norm.js';

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

describe('fastGroupNorm', () => {
  before(useWasm);

  for (const [channels, groups] of [
    [8, 4],
    [6, 6],
    [12, 1],
  ] as const) {
    it(`matches groupNorm and its gradients (${channels} channels, ${groups} groups)`, () => {
      const params = ParamFactory.create(1);
      after(() => disposeVariables(params.variables));
      const layer = createGroupNorm(params.scope('gn'), { channels, groups });
      tf.tidy(() => {
        layer.gamma!.assign(tf.randomUniform([channels], 0.5, 1.5, 'float32', 1));
        layer.beta!.assign(tf.randomUniform([channels], -0.5, 0.5, 'float32', 2));
        // An offset and a scale per sample, so centring matters.
        const x = tf.add(tf.mul(randomImages(`gn${channels}`, 3, 5, channels), 4), 7) as tf.Tensor4D;
        const weights = randomImages(`w${channels}`, 3, 5, channels);
        assert.ok(maxDiff(fastGroupNorm(x, layer), groupNorm(x, layer)) < 1e-4);
        const loss = (norm: typeof groupNorm) => (input: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) =>
          tf.sum(
            tf.mul(
              norm(input as tf.Tensor4D, {
                ...layer,
                gamma: gamma as tf.Variable,
                beta: beta as tf.Variable,
              }),
              weights,
            ),
          );
        const expected = tf.grads(loss(groupNorm))([x, layer.gamma!, layer.beta!]);
        const actual = tf.grads(loss(fastGroupNorm))([x, layer.gamma!, layer.beta!]);
        expected.forEach((grad, i) => {
          const scale = tf.max(tf.abs(grad)).dataSync()[0]!;
          assert.ok(maxDiff(actual[i]!, grad) < 1e-4 * Math.max(1, scale), `gradient ${i}`);
        });
      });
    });
  }
});
