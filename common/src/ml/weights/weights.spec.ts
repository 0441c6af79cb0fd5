import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { createRng, type Rng } from '../../util/rng.js';
import {
  architectureKey,
  assignWeights,
  decodeWeights,
  encodeWeights,
  fedAvg,
  variablesToWeights,
  WEIGHTS_MAGIC,
  WeightsFormatError,
  WeightsMismatchError,
  type Architecture,
  type WeightTensor,
} from './index.js';

const UNET: Architecture = {
  name: 'unet',
  config: { depth: 3, filters: 8, norm: 'instance', channels: [5, 4] },
};
const CREATED_AT = '2025-01-02T03:04:05.000Z';

function float32(name: string, shape: number[], values: number[]): WeightTensor {
  return { name, shape, dtype: 'float32', data: Float32Array.from(values) };
}

function int32(name: string, shape: number[], values: number[]): WeightTensor {
  return { name, shape, dtype: 'int32', data: Int32Array.from(values) };
}

function randomTensor(
  rng: Rng,
  name: string,
  shape: number[],
  dtype: 'float32' | 'int32' = 'float32',
): WeightTensor {
  const count = shape.reduce((a, b) => a * b, 1);
  const data =
    dtype === 'float32'
      ? Float32Array.from({ length: count }, () => rng.normal(0, 3))
      : Int32Array.from({ length: count }, () => rng.int(2_000_000) - 1_000_000);
  return { name, shape, dtype, data };
}

/** Tensors of many shapes: scalars, empty, odd byte lengths (so alignment padding is exercised), int32. */
function sampleTensors(seed: string): WeightTensor[] {
  const rng = createRng(seed);
  return [
    randomTensor(rng, 'enc1/conv1/kernel', [3, 3, 5, 4]),
    randomTensor(rng, 'enc1/conv1/bias', [3]),
    randomTensor(rng, 'enc1/norm/scale', []),
    randomTensor(rng, 'empty/a', [0]),
    randomTensor(rng, 'empty/b', [2, 0, 3]),
    randomTensor(rng, 'dec1/conv/kernel', [1, 1, 4, 7]),
    randomTensor(rng, 'optimizer/step', [], 'int32'),
    randomTensor(rng, 'odd/int', [5], 'int32'),
  ];
}

function encodeSample(seed: string, sampleCount?: number, architecture = UNET): Buffer {
  return encodeWeights(sampleTensors(seed), { architecture, sampleCount, createdAt: CREATED_AT });
}

function bytes(data: Float32Array | Int32Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function dataStartOf(blob: Uint8Array): number {
  const manifestLength = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength).readUInt32LE(12);
  return Math.ceil((24 + manifestLength) / 8) * 8;
}

/** A blob with a hand-written manifest and valid header and trailer, to test the manifest checks alone. */
function craftBlob(manifest: Record<string, unknown>, data: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(manifest));
  const dataStart = Math.ceil((24 + json.length) / 8) * 8;
  const blob = Buffer.alloc(dataStart + data.length + 32);
  blob.set(WEIGHTS_MAGIC, 0);
  blob.writeUInt32LE(1, 8);
  blob.writeUInt32LE(json.length, 12);
  blob.writeBigUInt64LE(BigInt(data.length), 16);
  json.copy(blob, 24);
  blob.set(data, dataStart);
  createHash('sha256')
    .update(blob.subarray(0, dataStart + data.length))
    .digest()
    .copy(blob, dataStart + data.length);
  return blob;
}

function craftedManifest(tensors: Record<string, unknown>[]): Record<string, unknown> {
  return { format: 'fedsynth-weights', version: 1, architecture: UNET, tensors, createdAt: CREATED_AT };
}

const ZERO_SHA = '0'.repeat(64);

function valuesOf(blob: Uint8Array, name: string): number[] {
  const tensor = decodeWeights(blob).tensors.find((t) => t.name === name);
  assert.ok(tensor, `no tensor ${name}`);
  return [...tensor.data];
}

describe('encodeWeights / decodeWeights', () => {
  it('round-trips tensors and metadata exactly, scalars and empty tensors included', () => {
    const tensors = sampleTensors('round-trip');
    const provenance = { site: 'site-a', round: 3 };
    const blob = encodeWeights(tensors, {
      architecture: UNET,
      sampleCount: 120,
      provenance,
      createdAt: CREATED_AT,
    });
    const { manifest, tensors: decoded, blobSha256 } = decodeWeights(blob, 'round-trip.weights');

    assert.equal(manifest.format, 'fedsynth-weights');
    assert.equal(manifest.version, 1);
    assert.deepEqual(manifest.architecture, UNET);
    assert.equal(manifest.sampleCount, 120);
    assert.deepEqual(manifest.provenance, provenance);
    assert.equal(manifest.createdAt, CREATED_AT);
    assert.equal(blobSha256, createHash('sha256').update(blob.subarray(0, -32)).digest('hex'));
    assert.deepEqual(
      decoded.map(({ name, shape, dtype }) => ({ name, shape, dtype })),
      tensors.map(({ name, shape, dtype }) => ({ name, shape, dtype })),
    );
    decoded.forEach((tensor, index) => {
      assert.equal(tensor.data.constructor, tensors[index].data.constructor);
      assert.ok(bytes(tensor.data).equals(bytes(tensors[index].data)), tensor.name);
    });
  });

  it('keeps the bits of special float values (NaN payloads, -0, subnormals, infinities)', () => {
    const special = new Float32Array(
      new Uint32Array([0x7fc00001, 0x80000000, 0x00000001, 0x7f800000, 0xff800000]).buffer,
    );
    const blob = encodeWeights([{ name: 'special', shape: [5], dtype: 'float32', data: special }], {
      architecture: UNET,
    });
    assert.ok(bytes(decodeWeights(blob).tensors[0].data).equals(bytes(special)));
  });

  it('writes the documented layout: magic, version, lengths, 8-aligned data and tensors, trailer', () => {
    const blob = encodeSample('layout', 7);
    assert.ok(blob.subarray(0, 8).equals(Buffer.from(WEIGHTS_MAGIC)));
    assert.equal(blob.readUInt32LE(8), 1);
    const manifestLength = blob.readUInt32LE(12);
    const dataLength = Number(blob.readBigUInt64LE(16));
    const dataStart = dataStartOf(blob);
    assert.equal(blob.length, dataStart + dataLength + 32);
    assert.ok(
      blob.subarray(24 + manifestLength, dataStart).every((byte) => byte === 0),
      'zero padding',
    );
    const manifest = JSON.parse(blob.toString('utf8', 24, 24 + manifestLength));
    for (const entry of manifest.tensors) {
      assert.equal(entry.offset % 8, 0, entry.name);
      const region = blob.subarray(dataStart + entry.offset, dataStart + entry.offset + entry.byteLength);
      assert.equal(entry.sha256, createHash('sha256').update(region).digest('hex'));
    }
  });

  it('is deterministic for the same tensors, metadata and createdAt', () => {
    assert.ok(encodeSample('same', 3).equals(encodeSample('same', 3)));
  });

  it('decodes an aligned blob into views of it (zero-copy)', () => {
    const blob = encodeSample('views');
    const { tensors } = decodeWeights(blob);
    for (const tensor of tensors) {
      assert.equal(tensor.data.buffer, blob.buffer, tensor.name);
      assert.ok(tensor.data.byteOffset >= blob.byteOffset && tensor.data.byteOffset % 8 === 0, tensor.name);
    }
  });

  it('decodes a blob that sits unaligned in memory by copying, with the same values', () => {
    const blob = encodeSample('unaligned');
    const backing = new ArrayBuffer(blob.length + 1);
    const shifted = new Uint8Array(backing, 1, blob.length);
    shifted.set(blob);
    const expected = decodeWeights(blob).tensors;
    decodeWeights(shifted).tensors.forEach((tensor, index) => {
      assert.notEqual(tensor.data.buffer, backing);
      assert.ok(bytes(tensor.data).equals(bytes(expected[index].data)), tensor.name);
    });
  });

  it('names the corrupted tensor when one of its bytes flips', () => {
    const blob = encodeSample('corrupt');
    const { manifest } = decodeWeights(blob);
    const entry = manifest.tensors.find((t) => t.name === 'dec1/conv/kernel')!;
    blob[dataStartOf(blob) + entry.offset + 5] ^= 0x01;
    assert.throws(
      () => decodeWeights(blob, 'site-b/round-2.weights'),
      (error: unknown) =>
        error instanceof WeightsFormatError &&
        error.source === 'site-b/round-2.weights' &&
        /^site-b\/round-2\.weights: tensor "dec1\/conv\/kernel" fails its sha256 check/.test(error.message),
    );
  });

  it('detects corruption outside the tensors: manifest, padding, header lengths, trailer', () => {
    const clean = encodeSample('outside');
    const manifestLength = clean.readUInt32LE(12);
    const flipAt = (offset: number): Buffer => {
      const copy = Buffer.from(clean);
      copy[offset] ^= 0x01;
      return copy;
    };
    // A digit inside "createdAt" keeps the JSON valid, so only the checksum can tell.
    const digit = clean.indexOf(CREATED_AT) + 3;
    assert.throws(() => decodeWeights(flipAt(digit), 'x'), /x: blob sha256 mismatch outside the tensor data/);
    assert.throws(
      () => decodeWeights(flipAt(24)),
      /manifest is not valid UTF-8 JSON.*checksum does not match/,
    );
    assert.throws(() => decodeWeights(flipAt(clean.length - 1)), /blob sha256 mismatch/);
    assert.throws(() => decodeWeights(flipAt(12)), WeightsFormatError);
    if (24 + manifestLength < dataStartOf(clean)) {
      assert.throws(() => decodeWeights(flipAt(24 + manifestLength)), /blob sha256 mismatch/);
    }
  });

  it('refuses truncated, too-short and over-long blobs', () => {
    const blob = encodeSample('truncate');
    assert.throws(
      () => decodeWeights(blob.subarray(0, blob.length - 1), 'cut.weights'),
      /cut\.weights: truncated: the header promises \d+ bytes but there are \d+/,
    );
    assert.throws(() => decodeWeights(blob.subarray(0, 40)), /truncated/);
    assert.throws(() => decodeWeights(blob.subarray(0, 10)), /too short/);
    assert.throws(() => decodeWeights(new Uint8Array(0)), /too short/);
    assert.throws(
      () => decodeWeights(Buffer.concat([blob, Buffer.alloc(8)])),
      /8 unexpected bytes after the trailer/,
    );
  });

  it('refuses wrong magic and unknown versions', () => {
    const wrongMagic = encodeSample('magic');
    wrongMagic[1] = 0x47;
    assert.throws(
      () => decodeWeights(wrongMagic, 'a.bin'),
      /a\.bin: not a fedsynth weights blob \(wrong magic/,
    );
    assert.throws(() => decodeWeights(Buffer.from('{"format":"fedsynth-weights"}'.repeat(4))), /wrong magic/);
    const futureVersion = encodeSample('version');
    futureVersion.writeUInt32LE(2, 8);
    assert.throws(() => decodeWeights(futureVersion), /unsupported container version 2/);
    const tensor = { name: 't', shape: [1], dtype: 'float32', offset: 0, byteLength: 4, sha256: ZERO_SHA };
    const futureManifest = craftBlob({ ...craftedManifest([tensor]), version: 2 }, new Uint8Array(4));
    assert.throws(() => decodeWeights(futureManifest), /unsupported manifest version 2/);
    assert.throws(
      () => decodeWeights(craftBlob({ ...craftedManifest([]), format: 'x' }, new Uint8Array(0))),
      /format/,
    );
  });

  it('checks each manifest entry against the data section (shape vs byteLength, bounds, alignment, overlap)', () => {
    const data = new Uint8Array(32);
    const sha = (from: number, to: number): string =>
      createHash('sha256').update(data.subarray(from, to)).digest('hex');
    const entry = (name: string, shape: number[], offset: number, byteLength: number, extra = {}) => ({
      name,
      shape,
      dtype: 'float32',
      offset,
      byteLength,
      sha256: sha(offset, offset + byteLength),
      ...extra,
    });
    const cases: [Record<string, unknown>[], RegExp][] = [
      [[entry('k', [2, 2], 0, 12)], /tensor "k" has byteLength 12 but shape \[2,2\] needs 16/],
      [[entry('k', [12], 0, 48)], /tensor "k" ends at 48, past the end of the data section \(32 bytes\)/],
      [[entry('k', [1], 4, 4)], /tensor "k" has offset 4, not a non-negative multiple of 8/],
      [[entry('a', [4], 0, 16), entry('b', [2], 8, 8)], /tensor "b" overlaps the tensor before it/],
      [[entry('a', [1], 0, 4), entry('a', [1], 8, 4)], /tensor "a" appears twice/],
      [[entry('k', [1], 0, 4, { dtype: 'float64' })], /tensor "k" has unsupported dtype "float64"/],
      [[entry('k', [-1], 0, 4)], /tensor "k" has an invalid shape \[-1\]/],
      [[entry('k', [1], 0, 4, { sha256: 'abc' })], /tensor "k" has no valid sha256/],
    ];
    for (const [tensors, message] of cases) {
      assert.throws(
        () => decodeWeights(craftBlob(craftedManifest(tensors), data), 'crafted'),
        (error: unknown) => {
          assert.ok(error instanceof WeightsFormatError);
          assert.match(error.message, /^crafted: manifest: /);
          assert.match(error.message, message);
          return true;
        },
      );
    }
    const fine = craftBlob(craftedManifest([entry('a', [4], 0, 16), entry('b', [2], 16, 8)]), data);
    assert.deepEqual(
      decodeWeights(fine).tensors.map((t) => t.name),
      ['a', 'b'],
    );
  });

  it('refuses inconsistent tensors and metadata when encoding', () => {
    const meta = { architecture: UNET };
    assert.throws(
      () => encodeWeights([float32('k', [2, 2], [1, 2, 3])], meta),
      /"k" has 3 elements but shape \[2,2\]/,
    );
    assert.throws(
      () => encodeWeights([float32('k', [1], [1]), float32('k', [1], [2])], meta),
      /duplicate tensor "k"/,
    );
    const wrongArray = { name: 'k', shape: [1], dtype: 'int32', data: new Float32Array(1) } as WeightTensor;
    assert.throws(() => encodeWeights([wrongArray], meta), /int32 but its data is not an Int32Array/);
    assert.throws(() => encodeWeights([], { architecture: UNET, sampleCount: -1 }), /sampleCount -1/);
    assert.throws(() => encodeWeights([], { architecture: { name: '', config: {} } }), /non-empty name/);
    assert.throws(() => encodeWeights([], { architecture: UNET, createdAt: 'yesterday' }), /createdAt/);
  });

  it('encodes and decodes a blob with no tensors', () => {
    const { tensors, manifest } = decodeWeights(encodeWeights([], { architecture: UNET }));
    assert.deepEqual(tensors, []);
    assert.ok(!Number.isNaN(Date.parse(manifest.createdAt)));
  });
});

describe('architectureKey', () => {
  it('ignores key order at every level and survives a blob round trip', () => {
    const reordered = { name: 'unet', config: { channels: [5, 4], norm: 'instance', filters: 8, depth: 3 } };
    assert.equal(architectureKey(reordered), architectureKey(UNET));
    assert.equal(
      architectureKey({ name: 'm', config: { a: { y: 1, x: [{ q: 1, p: 2 }] } } }),
      architectureKey({ name: 'm', config: { a: { x: [{ p: 2, q: 1 }], y: 1 } } }),
    );
    const decoded = decodeWeights(encodeSample('key')).manifest.architecture;
    assert.equal(architectureKey(decoded), architectureKey(UNET));
  });

  it('differs when the name or any config value differs', () => {
    const key = architectureKey(UNET);
    assert.notEqual(architectureKey({ ...UNET, name: 'swin' }), key);
    assert.notEqual(architectureKey({ ...UNET, config: { ...UNET.config, depth: 4 } }), key);
    assert.notEqual(architectureKey({ ...UNET, config: { ...UNET.config, channels: [4, 5] } }), key);
    assert.notEqual(architectureKey({ ...UNET, config: { ...UNET.config, extra: true } }), key);
  });
});

describe('variablesToWeights / assignWeights', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  function makeModel(prefix: string, seed: number): Record<string, tf.Variable> {
    return {
      'enc1/conv1/kernel': tf.variable(
        tf.randomNormal([3, 3, 2, 4], 0, 1, 'float32', seed),
        true,
        `${prefix}/k`,
      ),
      'enc1/conv1/bias': tf.variable(tf.randomNormal([4], 0, 1, 'float32', seed + 1), true, `${prefix}/b`),
      'norm/scale': tf.variable(tf.scalar(seed), true, `${prefix}/s`),
      'optimizer/step': tf.variable(tf.scalar(seed * 10, 'int32'), false, `${prefix}/step`),
    };
  }

  function dispose(model: Record<string, tf.Variable>): void {
    Object.values(model).forEach((variable) => variable.dispose());
  }

  it('snapshots variables sorted by name, as copies', () => {
    const model = makeModel('snap', 1);
    const weights = variablesToWeights(model);
    assert.deepEqual(
      weights.map((w) => w.name),
      ['enc1/conv1/bias', 'enc1/conv1/kernel', 'norm/scale', 'optimizer/step'],
    );
    assert.deepEqual(weights[1].shape, [3, 3, 2, 4]);
    assert.equal(weights[3].dtype, 'int32');
    assert.ok(weights[3].data instanceof Int32Array);
    weights[2].data[0] = 999;
    assert.equal(model['norm/scale'].dataSync()[0], 1);
    assert.deepEqual(
      variablesToWeights(Object.values(model)).map((w) => w.name),
      ['snap/b', 'snap/k', 'snap/s', 'snap/step'],
    );
    dispose(model);
  });

  it('round-trips through a blob into fresh variables with identical values and no leaked tensors', () => {
    const source = makeModel('src', 7);
    const target = makeModel('dst', 100);
    const blob = encodeWeights(variablesToWeights(source), { architecture: UNET, createdAt: CREATED_AT });
    const { tensors } = decodeWeights(blob);
    const before = tf.memory().numTensors;
    assignWeights(target, tensors);
    assert.equal(tf.memory().numTensors, before);
    for (const name of Object.keys(source)) {
      assert.deepEqual(target[name].dataSync(), source[name].dataSync(), name);
    }
    // The variables own their values: reusing the blob's memory must not change the model.
    blob.fill(0);
    assert.deepEqual(target['enc1/conv1/kernel'].dataSync(), source['enc1/conv1/kernel'].dataSync());
    assert.equal(tf.memory().numTensors, before);
    dispose(source);
    dispose(target);
  });

  it('refuses missing, unexpected and mismatched tensors, naming each, and assigns nothing', () => {
    const model = makeModel('strict', 3);
    const good = variablesToWeights(model);
    const original = model['norm/scale'].dataSync()[0];
    const changed = good.map((w) => (w.name === 'norm/scale' ? float32(w.name, [], [42]) : w));
    const expectRefusal = (tensors: WeightTensor[], message: RegExp) =>
      assert.throws(
        () => assignWeights(model, tensors),
        (error: unknown) => error instanceof WeightsMismatchError && message.test(error.message),
      );

    expectRefusal(
      changed.filter((w) => w.name !== 'enc1/conv1/bias'),
      /missing from the weights: "enc1\/conv1\/bias"/,
    );
    expectRefusal([...changed, float32('dec9/extra', [1], [0])], /not in the model: "dec9\/extra"/);
    expectRefusal(
      changed.map((w) => (w.name === 'enc1/conv1/kernel' ? float32(w.name, [3, 3, 4, 2], [...w.data]) : w)),
      /shape or dtype differs: "enc1\/conv1\/kernel" \(model \[3, 3, 2, 4\] float32, weights \[3, 3, 4, 2\] float32\)/,
    );
    expectRefusal(
      changed.map((w) => (w.name === 'optimizer/step' ? float32(w.name, [], [1]) : w)),
      /"optimizer\/step" \(model \[\] int32, weights \[\] float32\)/,
    );
    expectRefusal([...changed, changed[0]], /tensor "enc1\/conv1\/bias" appears twice/);
    expectRefusal(
      changed.map((w) => (w.name === 'norm/scale' ? float32(w.name, [2], [1]) : w)),
      /"norm\/scale" has 1 elements but shape \[2\] needs 2/,
    );
    assert.equal(model['norm/scale'].dataSync()[0], original, 'nothing assigned after a refusal');
    dispose(model);
  });
});

describe('fedAvg', () => {
  const blobOf = (tensors: WeightTensor[], sampleCount?: number, architecture = UNET) =>
    encodeWeights(tensors, { architecture, sampleCount, createdAt: CREATED_AT });
  const siteA = blobOf([float32('w', [3], [0, 4, -8]), float32('b', [], [1]), int32('step', [2], [5, 9])], 1);
  const siteB = blobOf([float32('w', [3], [4, 8, 0]), float32('b', [], [5]), int32('step', [2], [7, 2])], 3);
  const inputs = [
    { blob: siteA, source: 'site-a' },
    { blob: siteB, source: 'site-b' },
  ];

  it('weights by sampleCount (1 and 3 → 0.25 and 0.75), sums the counts and records the inputs', () => {
    const averaged = fedAvg(inputs, { provenance: { round: 4 }, createdAt: CREATED_AT });
    assert.deepEqual(valuesOf(averaged, 'w'), [3, 7, -2]);
    assert.deepEqual(valuesOf(averaged, 'b'), [4]);
    const { manifest } = decodeWeights(averaged);
    assert.equal(manifest.sampleCount, 4);
    assert.deepEqual(manifest.architecture, UNET);
    assert.equal(manifest.createdAt, CREATED_AT);
    assert.deepEqual(
      manifest.tensors.map((t) => t.name),
      ['w', 'b', 'step'],
    );
    assert.deepEqual(manifest.provenance, {
      round: 4,
      fedAvg: {
        weighting: 'samples',
        int32Tensors: 'max',
        inputs: [
          { source: 'site-a', sampleCount: 1, weight: 0.25, blobSha256: decodeWeights(siteA).blobSha256 },
          { source: 'site-b', sampleCount: 3, weight: 0.75, blobSha256: decodeWeights(siteB).blobSha256 },
        ],
      },
    });
  });

  it('averages uniformly when asked', () => {
    const averaged = fedAvg(inputs, { weighting: 'uniform' });
    assert.deepEqual(valuesOf(averaged, 'w'), [2, 6, -4]);
    assert.deepEqual(valuesOf(averaged, 'b'), [3]);
    assert.equal(decodeWeights(averaged).manifest.sampleCount, 4);
    const noCounts = fedAvg(
      [
        { blob: blobOf([float32('w', [1], [1])]), source: 'x' },
        { blob: blobOf([float32('w', [1], [2])]), source: 'y' },
      ],
      { weighting: 'uniform' },
    );
    assert.deepEqual(valuesOf(noCounts, 'w'), [1.5]);
    assert.equal(decodeWeights(noCounts).manifest.sampleCount, undefined);
  });

  it('takes the maximum of int32 tensors instead of averaging them', () => {
    assert.deepEqual(valuesOf(fedAvg(inputs), 'step'), [7, 9]);
  });

  it('accepts decoded inputs as well as blobs', () => {
    const mixed = fedAvg([{ ...decodeWeights(siteA), source: 'site-a' }, inputs[1]]);
    assert.deepEqual(valuesOf(mixed, 'w'), [3, 7, -2]);
  });

  it('returns the same values when averaging identical weights', () => {
    const tensors = sampleTensors('identical');
    const counts = [7, 11, 13];
    const averaged = fedAvg(
      counts.map((count, i) => ({ blob: blobOf(tensors, count), source: `site-${i}` })),
    );
    const decoded = decodeWeights(averaged);
    assert.equal(decoded.manifest.sampleCount, 31);
    decoded.tensors.forEach((tensor, index) => {
      assert.ok(bytes(tensor.data).equals(bytes(tensors[index].data)), tensor.name);
    });
  });

  it('does not depend on the order of its inputs beyond float rounding', () => {
    const sites = [5, 17, 2].map((count, i) => ({
      blob: blobOf(sampleTensors(`order-${i}`), count),
      source: `s${i}`,
    }));
    const forward = decodeWeights(fedAvg(sites)).tensors;
    const backward = decodeWeights(fedAvg([sites[2], sites[0], sites[1]])).tensors;
    const inputsDecoded = sites.map((site) => decodeWeights(site.blob).tensors);
    forward.forEach((tensor, t) => {
      assert.equal(tensor.name, backward[t].name);
      for (let j = 0; j < tensor.data.length; j++) {
        const x = tensor.data[j];
        assert.ok(Math.abs(x - backward[t].data[j]) <= Math.abs(x) * 2 ** -23, `${tensor.name}[${j}]`);
        if (tensor.dtype === 'float32') {
          const exact =
            (5 * inputsDecoded[0][t].data[j] +
              17 * inputsDecoded[1][t].data[j] +
              2 * inputsDecoded[2][t].data[j]) /
            24;
          assert.ok(
            Math.abs(x - exact) <= Math.abs(exact) * 2 ** -24 + 1e-45,
            `${tensor.name}[${j}] vs float64`,
          );
        }
      }
    });
  });

  it('refuses inputs without a positive sampleCount when weighting by samples, naming them', () => {
    const noCount = {
      blob: blobOf([float32('w', [3], [1, 2, 3]), float32('b', [], [0]), int32('step', [2], [0, 0])]),
      source: 'site-c',
    };
    assert.throws(
      () => fedAvg([inputs[0], noCount]),
      /fedAvg: site-c: has no sampleCount; weighting by samples needs a positive count/,
    );
    const zero = { blob: blobOf([float32('w', [3], [1, 2, 3])], 0), source: 'site-z' };
    assert.throws(() => fedAvg([zero]), /site-z: has sampleCount 0/);
    assert.throws(() => fedAvg([]), /no inputs/);
  });

  it('refuses mismatched architecture, config, tensor names, shapes and dtypes, naming the blob', () => {
    const tensorsA = [float32('w', [3], [0, 4, -8]), float32('b', [], [1]), int32('step', [2], [5, 9])];
    const variant = (tensors: WeightTensor[], architecture = UNET) => ({
      blob: blobOf(tensors, 2, architecture),
      source: 'site-x',
    });
    const cases: [ReturnType<typeof variant>, RegExp][] = [
      [variant(tensorsA, { ...UNET, name: 'swin' }), /architecture \["swin",.*\] vs \["unet",/],
      [
        variant(tensorsA, { ...UNET, config: { ...UNET.config, filters: 16 } }),
        /architecture .*"filters":16/,
      ],
      [variant(tensorsA.slice(0, 2)), /missing tensors "step"/],
      [variant([...tensorsA, float32('extra', [1], [0])]), /unexpected tensors "extra"/],
      [
        variant([float32('w', [1, 3], [0, 0, 0]), ...tensorsA.slice(1)]),
        /tensor "w" is \[1, 3\] float32, expected \[3\] float32/,
      ],
      [
        variant([...tensorsA.slice(0, 2), float32('step', [2], [5, 9])]),
        /tensor "step" is \[2\] float32, expected \[2\] int32/,
      ],
    ];
    for (const [input, message] of cases) {
      assert.throws(
        () => fedAvg([inputs[0], input]),
        (error: unknown) =>
          error instanceof WeightsMismatchError &&
          /^fedAvg: site-x does not match site-a: /.test(error.message) &&
          message.test(error.message),
        message.source,
      );
    }
  });

  it('refuses to average NaN or Infinity, naming the input and tensor', () => {
    const diverged = {
      blob: blobOf([float32('w', [3], [0, NaN, 1]), float32('b', [], [1]), int32('step', [2], [0, 0])], 2),
      source: 'site-nan',
    };
    assert.throws(
      () => fedAvg([inputs[0], diverged]),
      /fedAvg: site-nan: tensor "w" contains NaN or Infinity/,
    );
  });

  it('verifies blobs before averaging them', () => {
    const corrupt = Buffer.from(siteB);
    corrupt[corrupt.length - 40] ^= 0xff;
    assert.throws(
      () => fedAvg([inputs[0], { blob: corrupt, source: 'site-b' }]),
      /site-b: tensor "step" fails its sha256/,
    );
  });
});
