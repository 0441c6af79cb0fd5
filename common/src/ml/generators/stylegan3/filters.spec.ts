import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { maxAbsDiff } from '../stylegan2/stylegan-spec-helpers.js';
import { besselI0, firwinLowpass, kaiserWindow, planStyleGan3 } from './filters.js';
import { STYLEGAN3_PROFILES } from './stylegan3.js';

// scipy.signal.firwin(numtaps=12, cutoff=5, width=6, fs=32) and (24, 3.2, 4.1, 64), scipy 1.17.
const SCIPY_12 = [
  -0.008409652678485851, -0.02503766260198351, -0.01504756060290576, 0.06128277994527525, 0.19126825480045825,
  0.29594384113764166, 0.29594384113764166, 0.19126825480045825, 0.06128277994527525, -0.01504756060290576,
  -0.02503766260198351, -0.008409652678485851,
];
const SCIPY_24 = [
  -0.0052241232142877, -0.002309230968285467, 0.002918547326657676, 0.01061025987466171, 0.020633646844984702,
  0.03255034884072999, 0.045635230056890116, 0.058938236930286894, 0.07138248495236618, 0.08188624938579045,
  0.08949227389960518, 0.0934860760706003, 0.0934860760706003, 0.08949227389960518, 0.08188624938579045,
  0.07138248495236618, 0.058938236930286894, 0.045635230056890116, 0.03255034884072999, 0.020633646844984702,
  0.01061025987466171, 0.002918547326657676, -0.002309230968285467, -0.0052241232142877,
];

describe('StyleGAN3 filters and schedule', () => {
  it('designs the Kaiser-windowed low-pass filters exactly as scipy.signal.firwin', () => {
    assert.ok(maxAbsDiff(firwinLowpass(12, 5, 6, 32), SCIPY_12) < 1e-12);
    assert.ok(maxAbsDiff(firwinLowpass(24, 3.2, 4.1, 64), SCIPY_24) < 1e-12);
    assert.ok(Math.abs(besselI0(0) - 1) < 1e-15);
    assert.ok(Math.abs(besselI0(3) - 4.880792585865024) < 1e-12);
    assert.deepEqual(kaiserWindow(1, 5), [1]);
    assert.ok(Math.abs(kaiserWindow(5, 0)[2]! - 1) < 1e-15);
  });

  it('reproduces the official config-T schedule at 256² (cutoffs, sampling rates, sizes, channels, resampling)', () => {
    const plan = planStyleGan3(STYLEGAN3_PROFILES.paper);
    assert.deepEqual(plan.input, { channels: 512, size: 36, samplingRate: 16, bandwidth: 2 });
    const layers = plan.layers;
    assert.equal(layers.length, 15);
    // From networks_stylegan3.SynthesisNetwork with the defaults (numpy).
    assert.deepEqual(
      layers.map((l) => l.outSamplingRate),
      [16, 16, 16, 32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256],
    );
    assert.deepEqual(
      layers.map((l) => l.outSize),
      [36, 36, 36, 52, 52, 84, 84, 148, 148, 148, 276, 276, 276, 256, 256],
    );
    assert.deepEqual(
      layers.map((l) => l.outChannels),
      [512, 512, 512, 512, 512, 512, 512, 512, 512, 362, 256, 181, 128, 128, 5],
    );
    assert.ok(Math.abs(layers[9]!.outCutoff - 45.254833995939045) < 1e-9);
    assert.ok(Math.abs(layers[3]!.outHalfWidth - 10.34314575050762) < 1e-9);
    assert.deepEqual(
      layers.map((l) => [l.up, l.down, l.padding[0], l.padding[1]]),
      [
        [2, 2, 9, 8],
        [2, 2, 9, 8],
        [2, 2, 9, 8],
        [4, 2, -6, -9],
        [2, 2, 9, 8],
        [4, 2, -6, -9],
        [2, 2, 9, 8],
        [4, 2, -6, -9],
        [2, 2, 9, 8],
        [2, 2, 9, 8],
        [4, 2, -6, -9],
        [2, 2, 9, 8],
        [2, 2, 9, 8],
        [2, 2, -11, -12],
        [1, 1, 0, 0],
      ],
    );
    assert.deepEqual(
      layers.map((l) => [l.upFilter?.length ?? 1, l.downFilter?.length ?? 1]),
      layers.map((l) => (l.isToRgb ? [1, 1] : [6 * l.up, 6 * l.down])),
    );
    assert.deepEqual(
      layers.map((l) => l.isCritical),
      layers.map((_, i) => i >= 12),
    );
    // Every filter has unit DC gain and is symmetric.
    for (const f of layers.flatMap((l) => [l.upFilter, l.downFilter]).filter((f) => f !== undefined)) {
      assert.ok(Math.abs(f.reduce((a, b) => a + b, 0) - 1) < 1e-9);
      assert.ok(maxAbsDiff(f, [...f].reverse()) < 1e-12);
    }
  });

  it('plans the smaller profiles consistently (sizes chain from layer to layer, toRGB makes 5 channels)', () => {
    for (const profile of ['cpu', 'tiny'] as const) {
      const config = STYLEGAN3_PROFILES[profile];
      const { input, layers } = planStyleGan3(config);
      let size = input.size;
      let channels = input.channels;
      for (const layer of layers) {
        assert.equal(layer.inSize, size);
        assert.equal(layer.inChannels, channels);
        // Output size = ((in + k − 1)·up + pad − upTaps + 1 − downTaps) / down + 1.
        const upTaps = layer.upFilter?.length ?? 1;
        const downTaps = layer.downFilter?.length ?? 1;
        const filtered =
          (layer.inSize + layer.convKernel - 1) * layer.up + layer.padding[0] + layer.padding[1];
        assert.equal(Math.ceil((filtered - upTaps + 1 - downTaps + 1) / layer.down), layer.outSize);
        size = layer.outSize;
        channels = layer.outChannels;
      }
      assert.equal(size, config.resolution);
      assert.equal(channels, 5);
    }
  });
});
