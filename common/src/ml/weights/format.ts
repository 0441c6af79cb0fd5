// Model weights as one self-describing, verifiable binary blob: the "fedsynth-weights" format, container version 1.
// Weights travel between sites and the coordinator (FedAvg rounds, releases), so every byte is checked on read.
//
// Layout. Integers are little-endian; offsets are in bytes from the start of the blob.
//
//   offset    size  field
//   0         8     magic 89 46 53 57 0D 0A 1A 0A ("\x89FSW\r\n\x1a\n"; like PNG's, the high byte, CR LF and ^Z
//                   expose 7-bit and text-mode mangling in transit)
//   8         4     uint32 container version, = 1
//   12        4     uint32 M, manifest byte length
//   16        8     uint64 D, data section byte length
//   24        M     manifest: UTF-8 JSON, no BOM (see below)
//   24+M      P     zero bytes, P = (8 - (24 + M) % 8) % 8, so the data section starts at a multiple of 8
//   S=24+M+P  D     data section: tensor i's elements at S + tensors[i].offset, little-endian, row-major (C order)
//   S+D       32    trailer: sha256 of bytes [0, S + D), i.e. everything before it
//   Total length = S + D + 32 exactly; nothing may follow the trailer.
//
// Manifest, version 1 (keys in this order when written; readers must not depend on the order):
//   {
//     "format": "fedsynth-weights",
//     "version": 1,
//     "architecture": { "name": "unet", "config": { "depth": 6, "filters": 64, ... } },
//     "tensors": [
//       { "name": "enc1/conv1/kernel", "shape": [3, 3, 5, 64], "dtype": "float32",
//         "offset": 0, "byteLength": 11520, "sha256": "<64 lowercase hex digits>" },
//       ...
//     ],
//     "sampleCount": 1234,   // optional: number of training examples behind these weights (the FedAvg weight)
//     "provenance": { },     // optional, free-form JSON object: site, study, round, the inputs of an average, ...
//     "createdAt": "2025-01-01T00:00:00.000Z"
//   }
// Tensor rules: names non-empty and unique; shape entries are non-negative integers ([] is a scalar, a 0 makes an
// empty tensor); dtype is float32 or int32 (4 bytes per element); byteLength = 4 × product(shape); offset is a
// multiple of 8 relative to S; regions follow manifest order, do not overlap and lie inside the data section;
// bytes between regions are zero. A tensor's sha256 covers its byteLength bytes only, so a corrupted tensor can be
// named; the trailer covers the rest (header, manifest, padding).
//
// Since S and every offset are multiples of 8, a blob that starts 8-aligned in memory (any fresh Buffer or
// ArrayBuffer, e.g. from fs.readFile) decodes into Float32Array/Int32Array views of the blob with no copy.

import { createHash } from 'node:crypto';
import { endianness } from 'node:os';

export const WEIGHTS_FORMAT = 'fedsynth-weights';
export const WEIGHTS_FORMAT_VERSION = 1;

/** The 8 magic bytes that open every blob. */
export const WEIGHTS_MAGIC: Readonly<Uint8Array> = Uint8Array.of(
  0x89,
  0x46,
  0x53,
  0x57,
  0x0d,
  0x0a,
  0x1a,
  0x0a,
);

const HEADER_BYTES = 24;
const TRAILER_BYTES = 32;
const ALIGNMENT = 8;
const BYTES_PER_ELEMENT = 4;
const SHA256_HEX = /^[0-9a-f]{64}$/;
// Same length as a real digest, so the manifest keeps its length when the digests are filled in (see writeBlob).
const PLACEHOLDER_SHA256 = '0'.repeat(64);

export type WeightDtype = 'float32' | 'int32';

export interface WeightTensor {
  name: string;
  shape: number[];
  dtype: WeightDtype;
  data: Float32Array | Int32Array;
}

export interface Architecture {
  name: string;
  config: Record<string, unknown>;
}

export interface TensorEntry {
  name: string;
  shape: number[];
  dtype: WeightDtype;
  /** Bytes from the start of the data section; a multiple of 8. */
  offset: number;
  byteLength: number;
  /** Lowercase hex sha256 of the tensor's bytes. */
  sha256: string;
}

export interface WeightsManifest {
  format: typeof WEIGHTS_FORMAT;
  version: typeof WEIGHTS_FORMAT_VERSION;
  architecture: Architecture;
  tensors: TensorEntry[];
  sampleCount?: number;
  provenance?: Record<string, unknown>;
  /** ISO 8601 timestamp. */
  createdAt: string;
}

export interface WeightsMeta {
  architecture: Architecture;
  sampleCount?: number;
  provenance?: Record<string, unknown>;
  /** Defaults to now; pass one for reproducible blobs. */
  createdAt?: string | Date;
}

export interface DecodedWeights {
  manifest: WeightsManifest;
  /** In manifest order. Views into the blob when it is 4-byte aligned in memory, else copies. */
  tensors: WeightTensor[];
  /** Hex sha256 from the trailer (verified): a content address for the whole blob. */
  blobSha256: string;
}

/** A blob that cannot be read: names the source (file, site upload, ...) and what is wrong. */
export class WeightsFormatError extends Error {
  constructor(
    readonly source: string,
    readonly problem: string,
  ) {
    super(`${source}: ${problem}`);
    this.name = 'WeightsFormatError';
  }
}

/** Tensors or metadata that are valid on their own but do not fit what they are used with (a model, an average). */
export class WeightsMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WeightsMismatchError';
  }
}

/**
 * A stable key for an architecture: its name plus the canonical JSON of its config (object keys sorted at every
 * level). Blobs are only mixed (averaged, assigned) when their keys are equal.
 */
export function architectureKey(architecture: Architecture): string {
  return `[${JSON.stringify(architecture.name)},${canonicalJson(architecture.config)}]`;
}

/** JSON with object keys sorted, otherwise JSON.stringify's semantics, so a config keys the same before and after
 * a round trip through a manifest. */
export function canonicalJson(value: unknown): string {
  return canonicalize(value) ?? 'null';
}

function canonicalize(value: unknown): string | undefined {
  if (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
  ) {
    value = (value as { toJSON(): unknown }).toJSON();
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonicalize(item) ?? 'null').join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const members: string[] = [];
    for (const key of Object.keys(record).sort()) {
      const member = canonicalize(record[key]);
      if (member !== undefined) members.push(`${JSON.stringify(key)}:${member}`);
    }
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value);
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

/** Checks a tensor's own consistency; returns the problem, or undefined when it is fine. */
export function weightTensorProblem(tensor: WeightTensor): string | undefined {
  if (typeof tensor.name !== 'string' || tensor.name === '') return 'a tensor has an empty or missing name';
  const label = `tensor "${tensor.name}"`;
  if (!isValidShape(tensor.shape)) return `${label} has an invalid shape ${JSON.stringify(tensor.shape)}`;
  if (tensor.dtype === 'float32') {
    if (!(tensor.data instanceof Float32Array))
      return `${label} is float32 but its data is not a Float32Array`;
  } else if (tensor.dtype === 'int32') {
    if (!(tensor.data instanceof Int32Array)) return `${label} is int32 but its data is not an Int32Array`;
  } else {
    return `${label} has unsupported dtype ${JSON.stringify(tensor.dtype)} (float32 or int32)`;
  }
  const expected = elementCount(tensor.shape);
  if (tensor.data.length !== expected) {
    return `${label} has ${tensor.data.length} elements but shape [${tensor.shape}] needs ${expected}`;
  }
  return undefined;
}

/** Encodes tensors (in the given order) and metadata into one blob: a single allocation, tensors copied once. */
export function encodeWeights(tensors: readonly WeightTensor[], meta: WeightsMeta): Buffer {
  const names = new Set<string>();
  for (const tensor of tensors) {
    const problem = weightTensorProblem(tensor);
    if (problem) throw new WeightsMismatchError(`encodeWeights: ${problem}`);
    if (names.has(tensor.name))
      throw new WeightsMismatchError(`encodeWeights: duplicate tensor "${tensor.name}"`);
    names.add(tensor.name);
  }
  return writeBlob(tensors, meta, (index, target) => target.set(bytesOf(tensors[index].data)));
}

export interface TensorSpec {
  name: string;
  shape: number[];
  dtype: WeightDtype;
}

/**
 * Lays out a blob for `specs`, allocates it once, lets `fill` write each tensor's bytes straight into its region
 * (`target` is 8-byte aligned in memory), then fills in the digests. Specs must already be valid.
 */
export function writeBlob(
  specs: readonly TensorSpec[],
  meta: WeightsMeta,
  fill: (index: number, target: Uint8Array) => void,
): Buffer {
  assertLittleEndianHost();
  checkMeta(meta);
  let dataLength = 0;
  const entries: TensorEntry[] = specs.map((spec) => {
    const offset = alignUp(dataLength);
    const byteLength = elementCount(spec.shape) * BYTES_PER_ELEMENT;
    dataLength = offset + byteLength;
    const { name, shape, dtype } = spec;
    return { name, shape: [...shape], dtype, offset, byteLength, sha256: PLACEHOLDER_SHA256 };
  });
  const createdAt = meta.createdAt ?? new Date();
  const manifest: WeightsManifest = {
    format: WEIGHTS_FORMAT,
    version: WEIGHTS_FORMAT_VERSION,
    architecture: { name: meta.architecture.name, config: meta.architecture.config },
    tensors: entries,
    ...(meta.sampleCount !== undefined && { sampleCount: meta.sampleCount }),
    ...(meta.provenance !== undefined && { provenance: meta.provenance }),
    createdAt: typeof createdAt === 'string' ? createdAt : createdAt.toISOString(),
  };
  const manifestLength = Buffer.byteLength(JSON.stringify(manifest), 'utf8');
  const dataStart = alignUp(HEADER_BYTES + manifestLength);
  const payloadEnd = dataStart + dataLength;

  // Buffer.alloc: zeroed (padding must not leak old process memory) and never pooled, so byteOffset is 0.
  const blob = Buffer.alloc(payloadEnd + TRAILER_BYTES);
  blob.set(WEIGHTS_MAGIC, 0);
  blob.writeUInt32LE(WEIGHTS_FORMAT_VERSION, 8);
  blob.writeUInt32LE(manifestLength, 12);
  blob.writeBigUInt64LE(BigInt(dataLength), 16);
  entries.forEach((entry, index) => {
    const region = blob.subarray(dataStart + entry.offset, dataStart + entry.offset + entry.byteLength);
    fill(index, region);
    entry.sha256 = sha256Hex(region);
  });
  const written = blob.write(JSON.stringify(manifest), HEADER_BYTES, 'utf8');
  if (written !== manifestLength) throw new Error('writeBlob: manifest length changed while filling digests');
  createHash('sha256').update(blob.subarray(0, payloadEnd)).digest().copy(blob, payloadEnd);
  return blob;
}

/**
 * Decodes and fully verifies a blob: magic, versions, lengths, manifest structure, tensor bounds and shapes, every
 * tensor's sha256 and the trailer. Throws a WeightsFormatError naming `source` and the problem.
 */
export function decodeWeights(blob: Uint8Array, source = 'weights blob'): DecodedWeights {
  assertLittleEndianHost();
  const fail: (problem: string) => never = (problem) => {
    throw new WeightsFormatError(source, problem);
  };
  if (blob.byteLength < HEADER_BYTES + TRAILER_BYTES) {
    fail(`only ${blob.byteLength} bytes: too short to be a weights blob (truncated or not a weights file)`);
  }
  if (!WEIGHTS_MAGIC.every((byte, index) => blob[index] === byte)) {
    fail('not a fedsynth weights blob (wrong magic bytes)');
  }
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const containerVersion = view.getUint32(8, true);
  if (containerVersion !== WEIGHTS_FORMAT_VERSION) {
    fail(`unsupported container version ${containerVersion} (this build reads ${WEIGHTS_FORMAT_VERSION})`);
  }
  const manifestLength = view.getUint32(12, true);
  const dataLengthBig = view.getBigUint64(16, true);
  if (dataLengthBig > BigInt(Number.MAX_SAFE_INTEGER)) fail(`implausible data length ${dataLengthBig}`);
  const dataLength = Number(dataLengthBig);
  const dataStart = alignUp(HEADER_BYTES + manifestLength);
  const payloadEnd = dataStart + dataLength;
  const expectedLength = payloadEnd + TRAILER_BYTES;
  if (blob.byteLength < expectedLength) {
    fail(`truncated: the header promises ${expectedLength} bytes but there are ${blob.byteLength}`);
  }
  if (blob.byteLength > expectedLength) {
    fail(
      `${blob.byteLength - expectedLength} unexpected bytes after the trailer (expected ${expectedLength})`,
    );
  }

  const blobSha256 = Buffer.from(blob.buffer, blob.byteOffset + payloadEnd, TRAILER_BYTES).toString('hex');
  const trailerOk = sha256Hex(blob.subarray(0, payloadEnd)) === blobSha256;
  // Checked first but reported last, so that a corrupted tensor is named rather than just "checksum mismatch".
  const corruptionHint = trailerOk
    ? ''
    : ' (the blob checksum does not match either: corrupted in storage or transit?)';

  let parsed: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(
      blob.subarray(HEADER_BYTES, HEADER_BYTES + manifestLength),
    );
    parsed = JSON.parse(text);
  } catch (error) {
    fail(`manifest is not valid UTF-8 JSON: ${(error as Error).message}${corruptionHint}`);
  }
  const manifestProblem: (problem: string) => never = (problem) =>
    fail(`manifest: ${problem}${corruptionHint}`);
  const manifest = checkManifest(parsed, dataLength, manifestProblem);

  const tensors = manifest.tensors.map((entry): WeightTensor => {
    const start = dataStart + entry.offset;
    const bytes = blob.subarray(start, start + entry.byteLength);
    if (sha256Hex(bytes) !== entry.sha256) {
      fail(`tensor "${entry.name}" fails its sha256 check: its data is corrupted`);
    }
    return {
      name: entry.name,
      shape: entry.shape,
      dtype: entry.dtype,
      data: typedArrayOver(bytes, entry.dtype),
    };
  });
  if (!trailerOk)
    fail('blob sha256 mismatch outside the tensor data: header, manifest or padding is corrupted');
  return { manifest, tensors, blobSha256 };
}

function checkManifest(
  parsed: unknown,
  dataLength: number,
  fail: (problem: string) => never,
): WeightsManifest {
  if (!isPlainObject(parsed)) return fail('not a JSON object');
  if (parsed.format !== WEIGHTS_FORMAT)
    fail(`format is ${JSON.stringify(parsed.format)}, not "${WEIGHTS_FORMAT}"`);
  if (parsed.version !== WEIGHTS_FORMAT_VERSION) {
    fail(
      `unsupported manifest version ${JSON.stringify(parsed.version)} (this build reads ${WEIGHTS_FORMAT_VERSION})`,
    );
  }
  const architecture = parsed.architecture;
  if (!isPlainObject(architecture) || typeof architecture.name !== 'string' || architecture.name === '') {
    fail('architecture must be an object with a non-empty name');
  }
  if (!isPlainObject((architecture as Record<string, unknown>).config))
    fail('architecture.config must be an object');
  if (parsed.sampleCount !== undefined && !isNonNegativeFinite(parsed.sampleCount)) {
    fail(`sampleCount ${JSON.stringify(parsed.sampleCount)} is not a non-negative number`);
  }
  if (parsed.provenance !== undefined && !isPlainObject(parsed.provenance))
    fail('provenance must be an object');
  if (typeof parsed.createdAt !== 'string' || Number.isNaN(Date.parse(parsed.createdAt))) {
    fail(`createdAt ${JSON.stringify(parsed.createdAt)} is not a timestamp`);
  }
  if (!Array.isArray(parsed.tensors)) return fail('tensors must be an array');

  const names = new Set<string>();
  let previousEnd = 0;
  parsed.tensors.forEach((entry: unknown, index: number) => {
    if (!isPlainObject(entry)) return fail(`tensors[${index}] is not an object`);
    if (typeof entry.name !== 'string' || entry.name === '') return fail(`tensors[${index}] has no name`);
    const label = `tensor "${entry.name}"`;
    if (names.has(entry.name)) fail(`${label} appears twice`);
    names.add(entry.name);
    if (!isValidShape(entry.shape)) fail(`${label} has an invalid shape ${JSON.stringify(entry.shape)}`);
    if (entry.dtype !== 'float32' && entry.dtype !== 'int32') {
      fail(`${label} has unsupported dtype ${JSON.stringify(entry.dtype)}`);
    }
    const { offset, byteLength } = entry;
    if (!Number.isSafeInteger(offset) || (offset as number) < 0 || (offset as number) % ALIGNMENT !== 0) {
      fail(`${label} has offset ${JSON.stringify(offset)}, not a non-negative multiple of ${ALIGNMENT}`);
    }
    const expectedBytes = elementCount(entry.shape as number[]) * BYTES_PER_ELEMENT;
    if (byteLength !== expectedBytes) {
      fail(
        `${label} has byteLength ${JSON.stringify(byteLength)} but shape [${entry.shape}] needs ${expectedBytes}`,
      );
    }
    if ((offset as number) < previousEnd) fail(`${label} overlaps the tensor before it (offset ${offset})`);
    previousEnd = (offset as number) + expectedBytes;
    if (previousEnd > dataLength) {
      fail(`${label} ends at ${previousEnd}, past the end of the data section (${dataLength} bytes)`);
    }
    if (typeof entry.sha256 !== 'string' || !SHA256_HEX.test(entry.sha256)) {
      fail(`${label} has no valid sha256 (64 lowercase hex digits)`);
    }
  });
  return parsed as unknown as WeightsManifest;
}

function checkMeta(meta: WeightsMeta): void {
  const { architecture, sampleCount, provenance, createdAt } = meta;
  if (!isPlainObject(architecture) || typeof architecture.name !== 'string' || architecture.name === '') {
    throw new WeightsMismatchError('weights metadata: architecture needs a non-empty name');
  }
  if (!isPlainObject(architecture.config)) {
    throw new WeightsMismatchError('weights metadata: architecture.config must be a plain object');
  }
  if (sampleCount !== undefined && !isNonNegativeFinite(sampleCount)) {
    throw new WeightsMismatchError(
      `weights metadata: sampleCount ${sampleCount} is not a non-negative number`,
    );
  }
  if (provenance !== undefined && !isPlainObject(provenance)) {
    throw new WeightsMismatchError('weights metadata: provenance must be a plain object');
  }
  if (typeof createdAt === 'string' && Number.isNaN(Date.parse(createdAt))) {
    throw new WeightsMismatchError(`weights metadata: createdAt "${createdAt}" is not a timestamp`);
  }
}

/** A Float32Array/Int32Array over `bytes`: a view when 4-byte aligned in memory, else a copy. */
function typedArrayOver(bytes: Uint8Array, dtype: WeightDtype): Float32Array | Int32Array {
  const count = bytes.byteLength / BYTES_PER_ELEMENT;
  if (bytes.byteOffset % BYTES_PER_ELEMENT === 0) {
    return dtype === 'float32'
      ? new Float32Array(bytes.buffer, bytes.byteOffset, count)
      : new Int32Array(bytes.buffer, bytes.byteOffset, count);
  }
  const copy = dtype === 'float32' ? new Float32Array(count) : new Int32Array(count);
  new Uint8Array(copy.buffer).set(bytes);
  return copy;
}

function bytesOf(data: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function alignUp(offset: number): number {
  return Math.ceil(offset / ALIGNMENT) * ALIGNMENT;
}

function isValidShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((size) => Number.isSafeInteger(size) && size >= 0);
}

function isNonNegativeFinite(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

// Typed arrays use the host's byte order and the format is little-endian; Node's big-endian targets (s390x) are
// not supported rather than silently byte-swapping 100 MB models.
function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new Error('fedsynth weights need a little-endian host');
}
