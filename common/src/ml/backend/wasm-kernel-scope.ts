// Calls the wasm backend's own registered kernels directly on TensorInfos, the way wasm's kernels compose each
// other. This skips the engine (no tape, no tensor bookkeeping) and keeps intermediates on the wasm heap; the
// scope remembers every intermediate so one call frees them all.
import * as tf from '@tensorflow/tfjs';

type TensorInfo = tf.TensorInfo;
type DataId = tf.DataId;
type ExplicitPadding = tf.backend_util.ExplicitPadding;

/** The slice of tfjs-backend-wasm's BackendWasm that composite kernels need. */
export interface WasmBackendLike {
  incRef(dataId: DataId): void;
  disposeData(dataId: DataId, force?: boolean): boolean;
  readSync(dataId: DataId): tf.BackendValues;
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): tf.TypedArray;
}

export type Pair = [number, number];

export interface Conv2dCall {
  strides: Pair;
  dilations: Pair;
  /** Rows/columns of zeros before and after, per spatial axis: [[top, bottom], [left, right]]. */
  pads: [Pair, Pair];
}

export class WasmKernelScope {
  private readonly intermediates: TensorInfo[] = [];

  constructor(
    readonly backend: WasmBackendLike,
    private readonly backendName = 'wasm',
  ) {}

  /** Runs `build`, frees everything it made except the returned result, and hands that to the caller. */
  static run(backend: WasmBackendLike, build: (ops: WasmKernelScope) => TensorInfo): TensorInfo {
    const ops = new WasmKernelScope(backend);
    try {
      return ops.keep(build(ops));
    } finally {
      ops.disposeIntermediates();
    }
  }

  /** Runs the backend's registered kernel `kernelName` and tracks its output as an intermediate. */
  kernel(kernelName: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): TensorInfo {
    const config = tf.getKernel(kernelName, this.backendName);
    if (config == null) {
      throw new Error(`wasm training kernels need the '${kernelName}' kernel on '${this.backendName}'`);
    }
    return this.callKernel(config, inputs, attrs);
  }

  /** Runs a specific kernel config (e.g. the stock kernel an override replaced) and tracks its output. */
  callKernel(
    config: tf.KernelConfig,
    inputs: tf.NamedTensorInfoMap,
    attrs: tf.NamedAttrMap = {},
  ): TensorInfo {
    const out = config.kernelFunc({ inputs, backend: this.backend, attrs });
    if (Array.isArray(out)) {
      throw new Error(`kernel '${config.kernelName}' returned several outputs where one was expected`);
    }
    this.intermediates.push(out);
    return out;
  }

  /** A new tensor with every element set to `value`. */
  constant(shape: number[], value: number, dtype: tf.DataType = 'float32'): TensorInfo {
    const out = this.backend.makeOutput(shape, dtype);
    this.backend.typedArrayFromHeap(out).fill(value);
    this.intermediates.push(out);
    return out;
  }

  conv2d(x: TensorInfo, filter: TensorInfo, call: Conv2dCall): TensorInfo {
    return this.kernel('Conv2D', { x, filter }, this.convAttrs(call));
  }

  depthwiseConv2d(x: TensorInfo, filter: TensorInfo, call: Conv2dCall): TensorInfo {
    return this.kernel('DepthwiseConv2dNative', { x, filter }, this.convAttrs(call));
  }

  transpose(x: TensorInfo, perm: number[]): TensorInfo {
    return this.kernel('Transpose', { x }, { perm });
  }

  /** A view with a new shape (same data, one more reference), so it can be freed like any other result. */
  reshape(x: TensorInfo, shape: number[]): TensorInfo {
    return this.kernel('Reshape', { x }, { shape });
  }

  pad(x: TensorInfo, paddings: Pair[], constantValue = 0): TensorInfo {
    return this.kernel('PadV2', { x }, { paddings, constantValue });
  }

  reverse(x: TensorInfo, dims: number[]): TensorInfo {
    return this.kernel('Reverse', { x }, { dims });
  }

  slice(x: TensorInfo, begin: number[], size: number[]): TensorInfo {
    return this.kernel('Slice', { x }, { begin, size });
  }

  sum(x: TensorInfo, axis: number[]): TensorInfo {
    return this.kernel('Sum', { x }, { axis, keepDims: false });
  }

  scatterNd(indices: TensorInfo, updates: TensorInfo, shape: number[]): TensorInfo {
    return this.kernel('ScatterNd', { indices, updates }, { shape });
  }

  /** Copies `values` into a new tensor on the wasm heap. */
  tensor(values: Float32Array | Int32Array, shape: number[]): TensorInfo {
    const out = this.backend.makeOutput(shape, values instanceof Int32Array ? 'int32' : 'float32');
    this.backend.typedArrayFromHeap(out).set(values);
    this.intermediates.push(out);
    return out;
  }

  /** Stops tracking `result` so it survives disposeIntermediates(); it must not be a caller-owned input. */
  keep(result: TensorInfo): TensorInfo {
    const index = this.intermediates.lastIndexOf(result);
    if (index < 0) {
      throw new Error('a wasm composite kernel must return a tensor it made, never one of its inputs');
    }
    this.intermediates.splice(index, 1);
    return result;
  }

  disposeIntermediates(): void {
    for (const info of this.intermediates.splice(0)) {
      this.backend.disposeData(info.dataId);
    }
  }

  private convAttrs(call: Conv2dCall): tf.NamedAttrMap {
    const [[top, bottom], [left, right]] = call.pads;
    const pad: ExplicitPadding = [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ];
    return { strides: call.strides, dilations: call.dilations, pad, dataFormat: 'NHWC' };
  }
}

/** A kernel input that must be present. */
export function requiredInput(inputs: tf.NamedTensorInfoMap, name: string): TensorInfo {
  const info = inputs[name];
  if (info == null) throw new Error(`kernel input '${name}' is missing`);
  return info;
}
