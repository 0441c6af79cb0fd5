// Federated averaging (McMahan et al. 2017) over weights blobs: the coordinator's step at the end of each round.

import {
  architectureKey,
  decodeWeights,
  weightTensorProblem,
  writeBlob,
  WeightsMismatchError,
  type DecodedWeights,
  type WeightsManifest,
  type WeightTensor,
} from './format.js';

/** A blob to verify and decode, or weights already decoded (source then only labels errors and provenance). */
export type FedAvgInput =
  | { blob: Uint8Array; source: string }
  | (Pick<DecodedWeights, 'manifest' | 'tensors'> & { blobSha256?: string; source?: string });

export interface FedAvgOptions {
  /** 'samples' (default): weight each input by its manifest's sampleCount. 'uniform': equal weights. */
  weighting?: 'samples' | 'uniform';
  /** Merged into the output's provenance (e.g. study and round ids). */
  provenance?: Record<string, unknown>;
  createdAt?: string | Date;
}

interface Participant {
  source: string;
  manifest: WeightsManifest;
  tensors: Map<string, WeightTensor>;
  blobSha256?: string;
  weight: number;
}

// Elements per accumulation chunk: the float64 accumulator (128 KB) stays in cache while every input is added.
const CHUNK = 16_384;

/**
 * Averages weights into a new blob. Float tensors: Σ wᵢ·xᵢ / Σ wᵢ accumulated in float64. Inputs must share the
 * architecture key, tensor names, shapes and dtypes; otherwise a WeightsMismatchError names the input and why.
 * Non-finite values (a diverged site) are refused rather than poisoning the average. The output keeps the first
 * input's tensor order and architecture, carries sampleCount = Σ sampleCount, and provenance listing the inputs.
 */
export function fedAvg(inputs: readonly FedAvgInput[], options: FedAvgOptions = {}): Buffer {
  const weighting = options.weighting ?? 'samples';
  if (weighting !== 'samples' && weighting !== 'uniform') {
    throw new WeightsMismatchError(`fedAvg: unknown weighting ${JSON.stringify(weighting)}`);
  }
  if (inputs.length === 0) throw new WeightsMismatchError('fedAvg: nothing to average (no inputs)');
  const participants = inputs.map((input, index) => toParticipant(input, index, weighting));
  const [reference] = participants;
  for (const participant of participants.slice(1)) checkCompatible(reference, participant);

  const order = reference.manifest.tensors.map((entry) => entry.name);
  const totalWeight = participants.reduce((sum, participant) => sum + participant.weight, 0);
  const counts = participants.map((participant) => participant.manifest.sampleCount);
  const sampleCount = counts.every((count) => count !== undefined)
    ? counts.reduce((sum: number, count) => sum + count!, 0)
    : undefined;
  const provenance = {
    ...options.provenance,
    fedAvg: {
      weighting,
      int32Tensors: 'max',
      inputs: participants.map((participant) => ({
        source: participant.source,
        sampleCount: participant.manifest.sampleCount ?? null,
        weight: participant.weight / totalWeight,
        ...(participant.blobSha256 !== undefined && { blobSha256: participant.blobSha256 }),
      })),
    },
  };
  const specs = order.map((name) => reference.tensors.get(name)!);
  return writeBlob(
    specs,
    { architecture: reference.manifest.architecture, sampleCount, provenance, createdAt: options.createdAt },
    (index, target) => {
      const { name, dtype } = specs[index];
      const sources = participants.map((participant) => participant.tensors.get(name)!.data);
      if (dtype === 'int32') {
        // int32 tensors are counters (optimizer steps, seen images), not parameters: an average of counters means
        // nothing and would not be an integer, so the output keeps the largest (the most advanced participant).
        maxInto(
          new Int32Array(target.buffer, target.byteOffset, target.byteLength / 4),
          sources as Int32Array[],
        );
      } else {
        const output = new Float32Array(target.buffer, target.byteOffset, target.byteLength / 4);
        const weights = participants.map((participant) => participant.weight);
        weightedMeanInto(output, sources as Float32Array[], weights, totalWeight, (inputIndex) => {
          const culprit = participants[inputIndex]?.source ?? 'an input';
          throw new WeightsMismatchError(
            `fedAvg: ${culprit}: tensor "${name}" contains NaN or Infinity; ` +
              'refusing to average it (did training diverge at that site?)',
          );
        });
      }
    },
  );
}

function toParticipant(input: FedAvgInput, index: number, weighting: 'samples' | 'uniform'): Participant {
  let source: string;
  let decoded: Pick<DecodedWeights, 'manifest' | 'tensors'> & { blobSha256?: string };
  if ('blob' in input) {
    source = input.source;
    decoded = decodeWeights(input.blob, input.source);
  } else {
    source = input.source ?? `input #${index + 1}`;
    decoded = input;
    for (const tensor of decoded.tensors) {
      const problem = weightTensorProblem(tensor);
      if (problem) throw new WeightsMismatchError(`fedAvg: ${source}: ${problem}`);
    }
  }
  const { manifest, tensors, blobSha256 } = decoded;
  const sampleCount = manifest.sampleCount;
  if (
    weighting === 'samples' &&
    !(typeof sampleCount === 'number' && Number.isFinite(sampleCount) && sampleCount > 0)
  ) {
    throw new WeightsMismatchError(
      `fedAvg: ${source}: ${sampleCount === undefined ? 'has no sampleCount' : `has sampleCount ${sampleCount}`}; ` +
        "weighting by samples needs a positive count (or pass weighting: 'uniform')",
    );
  }
  const byName = new Map<string, WeightTensor>();
  for (const tensor of tensors) {
    if (byName.has(tensor.name))
      throw new WeightsMismatchError(`fedAvg: ${source}: tensor "${tensor.name}" twice`);
    byName.set(tensor.name, tensor);
  }
  // Decoded inputs are trusted to pair their manifest with their tensors; the manifest's list defines the order.
  if (manifest.tensors.length !== byName.size || manifest.tensors.some((entry) => !byName.has(entry.name))) {
    throw new WeightsMismatchError(`fedAvg: ${source}: manifest and tensors list different names`);
  }
  return {
    source,
    manifest,
    tensors: byName,
    blobSha256,
    weight: weighting === 'samples' ? sampleCount! : 1,
  };
}

function checkCompatible(reference: Participant, participant: Participant): void {
  const fail = (problem: string): never => {
    throw new WeightsMismatchError(
      `fedAvg: ${participant.source} does not match ${reference.source}: ${problem}`,
    );
  };
  const expectedKey = architectureKey(reference.manifest.architecture);
  const actualKey = architectureKey(participant.manifest.architecture);
  if (actualKey !== expectedKey) fail(`architecture ${actualKey} vs ${expectedKey}`);

  const missing = [...reference.tensors.keys()].filter((name) => !participant.tensors.has(name));
  const unexpected = [...participant.tensors.keys()].filter((name) => !reference.tensors.has(name));
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing tensors ${quoteAll(missing)}`);
  if (unexpected.length > 0) problems.push(`unexpected tensors ${quoteAll(unexpected)}`);
  for (const [name, expected] of reference.tensors) {
    const actual = participant.tensors.get(name);
    if (!actual) continue;
    if (actual.dtype !== expected.dtype || actual.shape.join(',') !== expected.shape.join(',')) {
      problems.push(
        `tensor "${name}" is [${actual.shape.join(', ')}] ${actual.dtype}, ` +
          `expected [${expected.shape.join(', ')}] ${expected.dtype}`,
      );
    }
  }
  if (problems.length > 0) fail(problems.join('; '));
}

function weightedMeanInto(
  output: Float32Array,
  sources: readonly Float32Array[],
  weights: readonly number[],
  totalWeight: number,
  onNonFinite: (inputIndex: number) => never,
): void {
  const accumulator = new Float64Array(Math.min(CHUNK, output.length));
  for (let start = 0; start < output.length; start += CHUNK) {
    const length = Math.min(CHUNK, output.length - start);
    accumulator.fill(0);
    for (let k = 0; k < sources.length; k++) {
      const source = sources[k];
      const weight = weights[k];
      for (let j = 0; j < length; j++) accumulator[j] += weight * source[start + j];
    }
    // NaN and ±Infinity survive summation, so one check per chunk finds them; float32 values times sample counts
    // cannot overflow float64.
    let checksum = 0;
    for (let j = 0; j < length; j++) {
      const mean = accumulator[j] / totalWeight;
      output[start + j] = mean;
      checksum += mean;
    }
    if (!Number.isFinite(checksum)) {
      const culprit = sources.findIndex((source) =>
        source.subarray(start, start + length).some((value) => !Number.isFinite(value)),
      );
      onNonFinite(culprit);
    }
  }
}

function maxInto(output: Int32Array, sources: readonly Int32Array[]): void {
  output.set(sources[0]);
  for (const source of sources.slice(1)) {
    for (let j = 0; j < output.length; j++) if (source[j] > output[j]) output[j] = source[j];
  }
}

function quoteAll(names: string[]): string {
  return names.map((name) => `"${name}"`).join(', ');
}
