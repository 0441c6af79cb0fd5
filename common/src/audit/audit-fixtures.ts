// Test and benchmark material for the audit: planted copies of private slices under the perturbations a
// memorizing generator's output shows (noise, intensity scale, a shift of a few pixels, a left-right mirror),
// and stores of candidates built from them.
import { createRng, type Rng } from '../util/rng.js';
import { SliceStoreWriter, type SliceStoreReader } from '../slices/slice-store.js';
import { AUDIT_CHANNELS } from './vectors.js';

export const PERTURBATIONS = ['noise', 'scale', 'shift', 'mirror', 'mixed'] as const;
export type Perturbation = (typeof PERTURBATIONS)[number];

export interface PerturbOptions {
  /** Gaussian noise sd in grey levels (default 8 ≈ 3% of the range) */
  noiseSd?: number;
  /** intensity factor range (default 0.8 … 1.2) */
  scale?: [number, number];
  /** largest shift in pixels per axis (default size/16, the audit's default search range: 4 px at 64²) */
  maxShift?: number;
}

const clip = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** One slice (NHWC uint8, size² × channels) changed by `kind`; the annotation channel is moved, never noised. */
export function perturbSlice(
  slice: Uint8Array,
  size: number,
  channels: number,
  kind: Perturbation,
  rng: Rng,
  options: PerturbOptions = {},
): Uint8Array {
  let out = Uint8Array.from(slice);
  const noise = (sd: number) => {
    for (let p = 0; p < size * size; p++) {
      for (let c = 0; c < AUDIT_CHANNELS; c++)
        out[p * channels + c] = clip(out[p * channels + c]! + rng.normal(0, sd));
    }
  };
  const scale = (f: number) => {
    for (let p = 0; p < size * size; p++) {
      for (let c = 0; c < AUDIT_CHANNELS; c++) out[p * channels + c] = clip(out[p * channels + c]! * f);
    }
  };
  const move = (dx: number, dy: number, mirror: boolean) => {
    const moved = new Uint8Array(out.length);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let sx = x - dx;
        const sy = y - dy;
        if (mirror) sx = size - 1 - sx;
        if (sx < 0 || sy < 0 || sx >= size || sy >= size) continue;
        for (let c = 0; c < channels; c++)
          moved[(y * size + x) * channels + c] = out[(sy * size + sx) * channels + c]!;
      }
    }
    out = moved;
  };
  const maxShift = options.maxShift ?? Math.max(1, Math.round(size / 16));
  const shift = (): [number, number] => {
    for (;;) {
      const dx = rng.int(2 * maxShift + 1) - maxShift;
      const dy = rng.int(2 * maxShift + 1) - maxShift;
      if (dx !== 0 || dy !== 0) return [dx, dy];
    }
  };
  const [lo, hi] = options.scale ?? [0.8, 1.2];
  const sd = options.noiseSd ?? 8;
  switch (kind) {
    case 'noise':
      noise(sd);
      break;
    case 'scale':
      scale(rng.uniform(lo, hi));
      break;
    case 'shift':
      move(...shift(), false);
      break;
    case 'mirror':
      move(0, 0, true);
      break;
    case 'mixed':
      move(...shift(), rng.chance(0.5));
      scale(rng.uniform(lo, hi));
      noise(sd);
      break;
  }
  return out;
}

export interface PlantedSet {
  /** NHWC slices: planted copies first, then fresh slices */
  data: Uint8Array;
  planted: number;
  fresh: number;
  /** per planted copy: the private store index it was made from and how */
  sources: Array<{ privateIndex: number; kind: Perturbation }>;
}

/**
 * `planted` perturbed copies of random training slices of `privateStore` (cycling through the perturbations),
 * followed by every slice of `fresh` (slices of other subjects), as one array.
 */
export async function plantedSet(
  privateStore: SliceStoreReader,
  planted: number,
  fresh: Uint8Array,
  seed: number,
  kinds: readonly Perturbation[] = PERTURBATIONS,
  options: PerturbOptions = {},
): Promise<PlantedSet> {
  const rng = createRng(`planted:${seed}`);
  const { size, sliceBytes } = privateStore.meta;
  const channels = privateStore.meta.channels.length;
  const train = privateStore.indicesOf('train');
  const sources = Array.from({ length: planted }, (_, i) => ({
    privateIndex: train[rng.int(train.length)]!,
    kind: kinds[i % kinds.length]!,
  }));
  const originals = await privateStore.readIndices(sources.map((s) => s.privateIndex));
  const data = new Uint8Array(planted * sliceBytes + fresh.length);
  sources.forEach((s, i) => {
    const slice = originals.subarray(i * sliceBytes, (i + 1) * sliceBytes);
    data.set(perturbSlice(slice, size, channels, s.kind, rng, options), i * sliceBytes);
  });
  data.set(fresh, planted * sliceBytes);
  return { data, planted, fresh: fresh.length / sliceBytes, sources };
}

/** Writes slices as a candidate slice store (one pseudo-subject, split 'test') with `like`'s geometry. */
export async function writeCandidateStore(
  file: string,
  like: SliceStoreReader,
  data: Uint8Array,
): Promise<void> {
  const { preset, scale, size, channels, annotation } = like.meta;
  const writer = await SliceStoreWriter.create(file, {
    preset,
    scale,
    size,
    channels,
    dtype: 'uint8',
    layout: 'NHWC',
    annotation,
    split: { seed: 0, testFraction: 1 },
    createdAt: new Date().toISOString(),
  });
  const count = data.length / like.meta.sliceBytes;
  await writer.addSubject(
    {
      id: 'candidates',
      split: 'test',
      labelled: true,
      z: Array.from({ length: count }, (_, i) => i),
      sourceDims: [size, size, count],
      reference: {},
    },
    data,
  );
  await writer.close();
}
