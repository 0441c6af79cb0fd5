import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { useWasm } from './segmentation-spec-helpers.js';
import {
  ATTENTION_MASK_VALUE,
  cyclicShift,
  needsAttentionMask,
  relativePositionIndex,
  shiftedWindowMask,
  windowGeometry,
  windowPartition,
  windowReverse,
  type WindowGeometry,
} from './swin-windows.js';

/** x[n, y, x, c] = a distinct number per element, so positions can be read back from values. */
function positional(n: number, h: number, w: number, c: number): tf.Tensor4D {
  return tf.reshape(tf.range(0, n * h * w * c, 1, 'float32'), [n, h, w, c]) as tf.Tensor4D;
}

describe('Swin window geometry', () => {
  before(useWasm);

  it('partitions into row-major windows and reverses exactly', () => {
    tf.tidy(() => {
      const [n, h, w, c] = [2, 8, 12, 3];
      const x = positional(n, h, w, c);
      const windows = windowPartition(x, 4);
      assert.deepEqual(windows.shape, [2 * 2 * 3, 16, 3]);
      const values = windows.arraySync();
      const source = x.arraySync();
      // Window 4 of image 1 is the second window of its second window row; token 5 is its (1, 1).
      const [win, token] = [1 * 6 + 1 * 3 + 1, 5];
      assert.deepEqual(values[win]![token], source[1]![4 + 1]![4 + 1]);
      assert.deepEqual(windowReverse(windows, 4, n, h, w).arraySync(), source);
    });
  });

  it('shifts cyclically like torch.roll(x, -s) and back', () => {
    tf.tidy(() => {
      const x = positional(1, 5, 6, 2);
      const shifted = cyclicShift(x, 2).arraySync();
      const source = x.arraySync();
      for (let y = 0; y < 5; y++) {
        for (let i = 0; i < 6; i++)
          assert.deepEqual(shifted[0]![y]![i], source[0]![(y + 2) % 5]![(i + 2) % 6]);
      }
      assert.deepEqual(cyclicShift(cyclicShift(x, 2), -2).arraySync(), source);
    });
  });

  it('indexes the relative position bias table as computed by hand for window 2', () => {
    // Tokens (0,0) (0,1) (1,0) (1,1); table 3×3 over (dy + 1, dx + 1): index = (dy + 1)·3 + (dx + 1).
    // row q = (0,0): dy, dx to keys = (0,0) (0,-1) (-1,0) (-1,-1) -> 4 3 1 0, and so on.
    const expected = [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4];
    assert.deepEqual([...relativePositionIndex(2)], expected);
    // Window 2 inside a window-3 table (5×5 rows): index = (dy + 2)·5 + (dx + 2).
    assert.deepEqual([...relativePositionIndex(2, 3)].slice(0, 4), [12, 11, 7, 6]);
    assert.equal(Math.max(...relativePositionIndex(7)), 13 * 13 - 1);
  });

  it('chooses windows, shifts and padding like the reference Swin', () => {
    assert.deepEqual(windowGeometry(16, 16, 4, true), {
      window: 4,
      shift: 2,
      height: 16,
      width: 16,
      paddedHeight: 16,
      paddedWidth: 16,
    });
    // A map no larger than one window is one window, unshifted.
    assert.deepEqual(windowGeometry(4, 4, 8, true), {
      window: 4,
      shift: 0,
      height: 4,
      width: 4,
      paddedHeight: 4,
      paddedWidth: 4,
    });
    const padded = windowGeometry(64, 64, 7, false);
    assert.equal(padded.paddedHeight, 70);
    assert.ok(needsAttentionMask(padded));
    assert.ok(!needsAttentionMask(windowGeometry(16, 16, 4, false)));
  });

  /**
   * Direct definition: in the shifted frame, token (y, x) holds padded-map pixel ((y+s) mod Hp, (x+s) mod
   * Wp). Two tokens may attend iff the shift moved them together (no wrap-around between them) and the key is
   * not padding.
   */
  function directMask(g: WindowGeometry): Float32Array {
    const { window, shift: s, height, width, paddedHeight: hp, paddedWidth: wp } = g;
    const across = wp / window;
    const tokens = window * window;
    const out = new Float32Array((hp / window) * across * tokens * tokens);
    for (let win = 0; win < out.length / (tokens * tokens); win++) {
      const at = (t: number) => [
        Math.floor(win / across) * window + Math.floor(t / window),
        (win % across) * window + (t % window),
      ];
      for (let q = 0; q < tokens; q++) {
        for (let k = 0; k < tokens; k++) {
          const [qy, qx] = at(q);
          const [ky, kx] = at(k);
          const [oqy, oqx, oky, okx] = [(qy! + s) % hp, (qx! + s) % wp, (ky! + s) % hp, (kx! + s) % wp];
          const together = oqy - oky === qy! - ky! && oqx - okx === qx! - kx!;
          const keyIsPadding = oky >= height || okx >= width;
          out[(win * tokens + q) * tokens + k] = together && !keyIsPadding ? 0 : ATTENTION_MASK_VALUE;
        }
      }
    }
    return out;
  }

  it('masks exactly the pairs the cyclic shift made adjacent, and padding keys', () => {
    const cases: [number, number, number, boolean][] = [
      [8, 8, 4, true],
      [12, 8, 4, true],
      [16, 16, 8, true],
      [6, 6, 4, false],
      [6, 10, 4, true],
      [64, 64, 7, true],
    ];
    for (const [h, w, window, shifted] of cases) {
      const g = windowGeometry(h, w, window, shifted);
      const mask = shiftedWindowMask(g);
      assert.deepEqual(mask, directMask(g), `${h}×${w} window ${window} shifted ${shifted}`);
    }
    // The first window of a shifted 8×8 map with window 4 is untouched by the wrap: nothing blocked there;
    // the last one mixes four regions: a token attends to exactly a quarter of the window.
    const mask = shiftedWindowMask(windowGeometry(8, 8, 4, true));
    const row = (win: number, q: number) => [...mask.subarray((win * 16 + q) * 16, (win * 16 + q + 1) * 16)];
    assert.ok(row(0, 5).every((v) => v === 0));
    assert.equal(row(3, 0).filter((v) => v === 0).length, 4);
  });
});
