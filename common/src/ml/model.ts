// What every trainable model in fedsynth is: named variables plus pure forward functions. The training runtime
// (common/src/ml/training), the weights blobs (common/src/ml/weights) and FedAvg only ever see this shape.
import type * as tf from '@tensorflow/tfjs';

export interface ModelArchitecture {
  /** e.g. 'unet', 'swin', 'stylegan2' */
  name: string;
  /** every hyper-parameter that changes the variables' names or shapes (weights of equal key can be averaged) */
  config: Record<string, unknown>;
}

export interface TrainableModel {
  readonly architecture: ModelArchitecture;
  /** trainable variables by stable, slash-separated name ('enc1/conv1/kernel'); never renamed once built */
  readonly variables: Record<string, tf.Variable>;
  dispose(): void;
}

/** Number of output classes of a segmenter: background, NCR, ED, ET (canonical labels 0..3). */
export const SEGMENTATION_CLASSES = 4;
/** Image channels a segmenter reads, in slice-store order: T1, T2, FLAIR, T1ce. */
export const SEGMENTATION_INPUT_CHANNELS = 4;

export interface Segmenter extends TrainableModel {
  /**
   * images: [N, H, W, 4] float32, slice bytes scaled to [-1, 1] (byte / 127.5 - 1).
   * Returns logits [N, H, W, 4] at full resolution first; in training mode with deep supervision, then the
   * auxiliary logits at 1/2, 1/4, ... resolution. Call inside tf.tidy (or dispose the outputs).
   */
  forward(images: tf.Tensor4D, training: boolean): tf.Tensor4D[];
}
