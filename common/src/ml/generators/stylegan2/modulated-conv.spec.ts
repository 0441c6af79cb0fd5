import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import {
  demodulationCoefficients,
  modulatedConv2d,
  modulatedWeights,
  type ModConvImpl,
  type ModulatedConvOptions,
} from './modulated-conv.js';
import { maxAbsDiff, randomTensor, useWasm } from './stylegan-spec-helpers.js';

const N = 3;
const IN = 4;
const OUT = 5;

/** The straightforward computation: per sample, an ordinary conv with that sample's modulated weights. */
function perSampleReference(
  x: tf.Tensor4D,
  kernel: tf.Tensor4D,
  styles: tf.Tensor2D,
  options: ModulatedConvOptions,
): tf.Tensor4D {
  return tf.tidy(() => {
    const gain = options.inputGain === undefined ? 1 : (options.inputGain as number);
    const weights = modulatedWeights(kernel, styles, options.demodulate);
    const [, k, , inC, outC] = weights.shape;
    const outputs: tf.Tensor4D[] = [];
    for (let n = 0; n < x.shape[0]; n++) {
      const xi = tf.mul(tf.slice(x, [n, 0, 0, 0], [1, -1, -1, -1]), gain) as tf.Tensor4D;
      const wi = tf.reshape(tf.slice(weights, [n, 0, 0, 0, 0], [1, -1, -1, -1, -1]), [
        k,
        k,
        inC,
        outC,
      ]) as tf.Tensor4D;
      if (options.up === 2) {
        const [, h, w] = xi.shape;
        const filter = tf.transpose(wi, [0, 1, 3, 2]) as tf.Tensor4D;
        outputs.push(tf.conv2dTranspose(xi, filter, [1, 2 * h + k - 2, 2 * w + k - 2, outC], 2, 'valid'));
      } else if (options.padding === 'full') {
        outputs.push(tf.conv2d(xi, wi, 1, k - 1));
      } else {
        outputs.push(tf.conv2d(xi, wi, 1, options.padding ?? 'same'));
      }
    }
    return tf.concat(outputs, 0);
  });
}

describe('modulated convolution', () => {
  before(useWasm);

  const x = () => randomTensor('x', [N, 6, 7, IN]) as tf.Tensor4D;
  const kernel = () => randomTensor('w', [3, 3, IN, OUT]) as tf.Tensor4D;
  // Styles around 1 (the affine layers' bias init), varied per sample and channel.
  const styles = () => tf.add(randomTensor('s', [N, IN], 0.5), 1) as tf.Tensor2D;

  it('demodulation gives every output channel of every sample unit-norm effective weights', () => {
    const norms = tf.tidy(() =>
      tf.sqrt(tf.sum(tf.square(modulatedWeights(kernel(), styles(), true)), [1, 2, 3])).dataSync(),
    );
    assert.equal(norms.length, N * OUT);
    for (const norm of norms) assert.ok(Math.abs(norm - 1) < 1e-5, `norm ${norm}`);
    // Without demodulation the weights are the kernel scaled per input channel by the style.
    tf.tidy(() => {
      const w = modulatedWeights(kernel(), styles(), false);
      const expected = tf.mul(tf.expandDims(kernel(), 0), tf.reshape(styles(), [N, 1, 1, IN, 1]));
      assert.ok(maxAbsDiff(w.dataSync(), expected.dataSync()) < 1e-6);
    });
  });

  it('the demodulation coefficients (one matmul) equal 1/‖modulated weights‖ per sample and output', () => {
    tf.tidy(() => {
      const fromMatmul = demodulationCoefficients(kernel(), styles()).dataSync();
      const direct = tf
        .rsqrt(tf.sum(tf.square(modulatedWeights(kernel(), styles(), false)), [1, 2, 3]))
        .dataSync();
      assert.ok(maxAbsDiff(fromMatmul, direct) < 1e-5);
    });
  });

  const cases: [string, ModulatedConvOptions][] = [
    ['demodulated, same padding', { demodulate: true }],
    ['not demodulated (toRGB), 1×1', { demodulate: false }],
    ['demodulated, transposed ×2', { demodulate: true, up: 2, padding: 'valid' }],
    [
      'demodulated, full padding, input gain (StyleGAN3)',
      { demodulate: true, padding: 'full', inputGain: 0.7 },
    ],
  ];
  for (const impl of ['scaled', 'grouped', 'loop'] as ModConvImpl[]) {
    it(`'${impl}' equals a per-sample conv with the modulated weights (≤ 1e-5)`, () => {
      for (const [label, options] of cases) {
        tf.tidy(() => {
          const k = label.includes('1×1') ? (randomTensor('w1', [1, 1, IN, OUT]) as tf.Tensor4D) : kernel();
          const expected = perSampleReference(x(), k, styles(), options);
          const got = modulatedConv2d(x(), k, styles(), { ...options, impl });
          assert.deepEqual(got.shape, expected.shape, label);
          const scale = Math.max(...Array.from(expected.dataSync(), Math.abs));
          const diff = maxAbsDiff(got.dataSync(), expected.dataSync());
          assert.ok(diff <= 1e-5, `${impl}: ${label}: ${diff} (outputs up to ${scale})`);
        });
      }
    });
  }

  it("'scaled' is differentiable twice w.r.t. the styles (path-length regularisation)", () => {
    const k = tf.variable(kernel());
    const s = styles();
    const before = tf.memory().numTensors;
    const grads = tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        const g = tf.grad((st: tf.Tensor) =>
          tf.sum(
            tf.square(
              modulatedConv2d(x(), k, st as tf.Tensor2D, { demodulate: true, up: 2, padding: 'valid' }),
            ),
          ),
        )(s);
        return tf.sum(tf.square(g)) as tf.Scalar;
      }, [k]);
      return Object.values(grads)[0]!.dataSync();
    });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(grads.some((v) => v !== 0) && grads.every(Number.isFinite));
    k.dispose();
    s.dispose();
  });
});
