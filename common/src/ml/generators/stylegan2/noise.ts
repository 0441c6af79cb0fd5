// Seeds for the per-pixel noise inputs: tf.randomNormal takes a number; derive a distinct, stable one per
// (run seed, layer) so the same noiseSeed always gives the same noise maps.
import { createRng, type SeedInput } from '../../../util/rng.js';

/** A non-negative 31-bit seed for tf.randomNormal, from (seed, layer index). */
export function noiseSeedFor(seed: SeedInput, layer: number): number {
  return createRng(`${seed}`).fork(`noise/${layer}`).uint32() >>> 1;
}
