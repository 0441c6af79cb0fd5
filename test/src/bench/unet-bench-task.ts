// 'bench-unet': the cpu-profile U-Net on random inputs of any size, for bench:train (the PyTorch twin in
// test/bench/unet_torch.py trains the same architecture on random inputs too).
import * as tf from '@tensorflow/tfjs';
import { UNET_PROFILES, buildUNet, segmentationLoss } from '@fedsynth/common/ml/segmentation/index';
import {
  paperUNetOptimizer,
  registerTrainingTask,
  type TrainingTask,
} from '@fedsynth/common/ml/training/index';
import type { Segmenter } from '@fedsynth/common/ml/model';

export const BENCH_UNET_KIND = 'bench-unet';
export const BENCH_UNET_MODULE = import.meta.url;

export interface BenchUNetConfig {
  size: number;
}

class BenchUNetTask implements TrainingTask<BenchUNetConfig> {
  private model!: Segmenter;
  private size = 64;

  init(spec: { config: BenchUNetConfig; seed: number }) {
    this.size = spec.config.size;
    this.model = buildUNet({ ...UNET_PROFILES.cpu, inputSize: this.size }, spec.seed);
    return { model: this.model, optimizer: paperUNetOptimizer() };
  }

  loadShard(): void {}

  async computeLossAndGrads(_step: number, rng: { next(): number }, batch: { count: number }) {
    const n = batch.count;
    const s = this.size;
    const images = tf.tensor4d(
      Float32Array.from({ length: n * s * s * 4 }, () => rng.next() * 2 - 1),
      [n, s, s, 4],
    );
    const labels = tf.tensor3d(
      Int32Array.from({ length: n * s * s }, () => Math.floor(rng.next() * 4)),
      [n, s, s],
      'int32',
    );
    const { value, grads } = tf.variableGrads(
      () => segmentationLoss(this.model.forward(images, true), labels),
      Object.values(this.model.variables),
    );
    const loss = (await value.data())[0]!;
    tf.dispose([value, images, labels]);
    const byName: Record<string, tf.Tensor> = {};
    for (const [name, variable] of Object.entries(this.model.variables)) byName[name] = grads[variable.name]!;
    return { loss, grads: byName, images: n };
  }
}

registerTrainingTask(BENCH_UNET_KIND, () => new BenchUNetTask());
