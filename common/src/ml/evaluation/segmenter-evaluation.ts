// Measures a segmenter on real held-out subjects the way the paper reports it: per subject, in 3-D over the
// subject's kept slices, Dice and HD95 per label (ET, ED, NCR) and per BraTS region (WT, TC, ET).
import * as tf from '@tensorflow/tfjs';
import { CANVAS_SIZE } from '../../slices/presets.js';
import type { SliceStoreReader, SliceStoreSubject } from '../../slices/slice-store.js';
import type { Split } from '../../slices/subject-split.js';
import { toSegmentationBatch } from '../data/slice-batch.js';
import {
  computeSubjectMetrics,
  summarizeMetrics,
  type MetricsSummary,
  type SubjectMetrics,
} from '../metrics/index.js';
import { SEGMENTATION_INPUT_CHANNELS, type Segmenter } from '../model.js';

/** Canonical label maps [count, size, size] predicted for `count` slices, `batchSize` at a time. */
export async function predictLabelMaps(
  segmenter: Segmenter,
  images: Float32Array,
  count: number,
  size: number,
  batchSize = 16,
): Promise<Uint8Array> {
  const plane = size * size;
  const out = new Uint8Array(count * plane);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const batch = images.subarray(
      start * plane * SEGMENTATION_INPUT_CHANNELS,
      (start + n) * plane * SEGMENTATION_INPUT_CHANNELS,
    );
    const predicted = tf.tidy(() => {
      const x = tf.tensor4d(batch, [n, size, size, SEGMENTATION_INPUT_CHANNELS]);
      return segmenter.forward(x, false)[0]!.argMax(-1).cast('int32');
    });
    try {
      out.set(await predicted.data(), start * plane);
    } finally {
      predicted.dispose();
    }
  }
  return out;
}

export interface EvaluationOptions {
  /** which subjects of the store: its held-out test subjects (default), the training ones, or all */
  split?: Split | 'all';
  batchSize?: number;
  onProgress?: (done: number, total: number, subject: string) => void;
}

export interface EvaluationResult {
  perSubject: SubjectMetrics[];
  summary: MetricsSummary;
  /** subjects skipped because they carry no annotation */
  unlabelled: string[];
}

export async function evaluateSegmenter(
  segmenter: Segmenter,
  store: SliceStoreReader,
  options: EvaluationOptions = {},
): Promise<EvaluationResult> {
  const split = options.split ?? 'test';
  const { size } = store.meta;
  const chosen = store.meta.subjects.filter((s) => split === 'all' || s.split === split);
  const labelled: SliceStoreSubject[] = chosen.filter((s) => s.labelled && s.count > 0);
  if (labelled.length === 0) {
    throw new Error(
      `${store.file}: no labelled ${split === 'all' ? '' : `${split} `}subjects to evaluate on`,
    );
  }
  // In-plane: the 256 canvas of 1 mm pixels shrunk to `size`; through-plane: BraTS's 1 mm slices.
  const pixelMm = CANVAS_SIZE / size;
  const perSubject: SubjectMetrics[] = [];
  for (const [i, subject] of labelled.entries()) {
    const batch = toSegmentationBatch(
      await store.readRange(subject.first, subject.count),
      subject.count,
      size,
    );
    const predicted = await predictLabelMaps(segmenter, batch.images, subject.count, size, options.batchSize);
    // Each slice at its own z: slices the keep rule dropped become empty planes, so distances across a gap are
    // measured as they are in the volume, not as if the neighbours touched.
    const z0 = Math.min(...subject.z);
    const depth = Math.max(...subject.z) - z0 + 1;
    const plane = size * size;
    const truthVolume = new Uint8Array(depth * plane);
    const predictedVolume = new Uint8Array(depth * plane);
    subject.z.forEach((z, k) => {
      truthVolume.set(batch.labels.subarray(k * plane, (k + 1) * plane), (z - z0) * plane);
      predictedVolume.set(predicted.subarray(k * plane, (k + 1) * plane), (z - z0) * plane);
    });
    perSubject.push(
      computeSubjectMetrics(
        subject.id,
        predictedVolume,
        truthVolume,
        [size, size, depth],
        [pixelMm, pixelMm, 1],
      ),
    );
    options.onProgress?.(i + 1, labelled.length, subject.id);
  }
  return {
    perSubject,
    summary: summarizeMetrics(perSubject),
    unlabelled: chosen.filter((s) => !s.labelled).map((s) => s.id),
  };
}
