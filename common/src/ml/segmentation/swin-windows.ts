// The geometry of (shifted) window attention: partitioning a feature map into windows and back, the cyclic
// shift, the relative-position index into the bias table and the additive mask of shifted or padded windows.
// The index and the mask are plain arrays (computed once per geometry); the tensor ops are pure.
import * as tf from '@tensorflow/tfjs';

/** Added to blocked attention scores (the reference implementation's value; exp(-100) is 0 for softmax). */
export const ATTENTION_MASK_VALUE = -100;

/** How one Swin block tiles a feature map of a given size. */
export interface WindowGeometry {
  /** Side of the (square) windows actually used. */
  window: number;
  /** Cyclic shift before partitioning (0 for regular blocks). */
  shift: number;
  /** The feature map's size, and the size after zero-padding to whole windows (bottom and right). */
  height: number;
  width: number;
  paddedHeight: number;
  paddedWidth: number;
}

/**
 * The tiling of an H×W map by `window`, shifted by window/2 when `shifted`. Maps no larger than one window
 * are one window without shift (as in the reference Swin); otherwise sides that are not multiples of the
 * window are padded, and the padding is masked out as attention keys.
 */
export function windowGeometry(
  height: number,
  width: number,
  window: number,
  shifted: boolean,
): WindowGeometry {
  const fitsOneWindow = height <= window && width <= window;
  const side = fitsOneWindow ? Math.max(height, width) : window;
  const shift = shifted && !fitsOneWindow ? Math.floor(window / 2) : 0;
  return {
    window: side,
    shift,
    height,
    width,
    paddedHeight: Math.ceil(height / side) * side,
    paddedWidth: Math.ceil(width / side) * side,
  };
}

export function needsAttentionMask(geometry: WindowGeometry): boolean {
  return (
    geometry.shift > 0 || geometry.paddedHeight !== geometry.height || geometry.paddedWidth !== geometry.width
  );
}

/**
 * [N, H, W, C] -> [N·(H/w)·(W/w), w·w, C]; windows in row-major order per image, tokens row-major per window.
 */
export function windowPartition(x: tf.Tensor4D, window: number): tf.Tensor3D {
  const [n, h, w, c] = x.shape;
  if (h % window !== 0 || w % window !== 0) {
    throw new Error(`windowPartition: ${h}×${w} is not a multiple of window ${window}`);
  }
  const grid = tf.reshape(x, [n, h / window, window, w / window, window, c]);
  return tf.reshape(tf.transpose(grid, [0, 1, 3, 2, 4, 5]), [-1, window * window, c]);
}

/** The inverse of windowPartition. */
export function windowReverse(
  windows: tf.Tensor3D,
  window: number,
  batch: number,
  height: number,
  width: number,
): tf.Tensor4D {
  const c = windows.shape[2];
  const grid = tf.reshape(windows, [batch, height / window, width / window, window, window, c]);
  return tf.reshape(tf.transpose(grid, [0, 1, 3, 2, 4, 5]), [batch, height, width, c]);
}

/** torch.roll(x, (-shift, -shift), (1, 2)): out[i, j] = x[(i + shift) mod H, (j + shift) mod W]. */
export function cyclicShift(x: tf.Tensor4D, shift: number): tf.Tensor4D {
  return rollAxis(rollAxis(x, shift, 1), shift, 2);
}

function rollAxis(x: tf.Tensor4D, shift: number, axis: 1 | 2): tf.Tensor4D {
  const size = x.shape[axis];
  const s = ((shift % size) + size) % size;
  if (s === 0) return x;
  const [head, tail] = tf.split(x, [s, size - s], axis);
  return tf.concat([tail!, head!], axis) as tf.Tensor4D;
}

/**
 * For every (query, key) token pair of a w×w window, the row of the (2t-1)² × heads bias table holding their
 * relative offset: (dy + t - 1)·(2t - 1) + (dx + t - 1), dy = y_q - y_k. `tableWindow` t ≥ w lets a smaller
 * window (a map smaller than the configured window) share the configured table.
 */
export function relativePositionIndex(window: number, tableWindow = window): Int32Array {
  if (tableWindow < window) throw new Error(`relativePositionIndex: table window ${tableWindow} < ${window}`);
  const tokens = window * window;
  const span = 2 * tableWindow - 1;
  const index = new Int32Array(tokens * tokens);
  for (let q = 0; q < tokens; q++) {
    const qy = Math.floor(q / window);
    const qx = q % window;
    for (let k = 0; k < tokens; k++) {
      const dy = qy - Math.floor(k / window);
      const dx = qx - (k % window);
      index[q * tokens + k] = (dy + tableWindow - 1) * span + (dx + tableWindow - 1);
    }
  }
  return index;
}

/**
 * The additive mask [windows, w², w²] (0 = attend, ATTENTION_MASK_VALUE = blocked) of one block, in the
 * shifted frame. As in the reference Swin, the shifted map is cut into regions that were not neighbours
 * before the cyclic shift (first rows/columns up to the last window, the last window's part that stayed, and
 * the part that wrapped around), and tokens attend only within their region. Padding tokens, additionally,
 * are never attended to.
 */
export function shiftedWindowMask(geometry: WindowGeometry): Float32Array {
  const { window, shift, height, width, paddedHeight: hp, paddedWidth: wp } = geometry;
  const region = (i: number, size: number): number =>
    shift === 0 ? 0 : i < size - window ? 0 : i < size - shift ? 1 : 2;
  const regionOf = new Int32Array(hp * wp);
  const isPadding = new Uint8Array(hp * wp);
  for (let y = 0; y < hp; y++) {
    for (let x = 0; x < wp; x++) {
      regionOf[y * wp + x] = region(y, hp) * 3 + region(x, wp);
      // The token at shifted (y, x) came from padded-map position (y + shift, x + shift) mod size.
      isPadding[y * wp + x] = Number((y + shift) % hp >= height || (x + shift) % wp >= width);
    }
  }
  const windowsDown = hp / window;
  const windowsAcross = wp / window;
  const tokens = window * window;
  const mask = new Float32Array(windowsDown * windowsAcross * tokens * tokens);
  const pixelOf = (win: number, token: number): number => {
    const y = Math.floor(win / windowsAcross) * window + Math.floor(token / window);
    const x = (win % windowsAcross) * window + (token % window);
    return y * wp + x;
  };
  for (let win = 0; win < windowsDown * windowsAcross; win++) {
    for (let q = 0; q < tokens; q++) {
      const queryPixel = pixelOf(win, q);
      for (let k = 0; k < tokens; k++) {
        const keyPixel = pixelOf(win, k);
        const blocked = regionOf[queryPixel] !== regionOf[keyPixel] || isPadding[keyPixel] === 1;
        mask[(win * tokens + q) * tokens + k] = blocked ? ATTENTION_MASK_VALUE : 0;
      }
    }
  }
  return mask;
}
