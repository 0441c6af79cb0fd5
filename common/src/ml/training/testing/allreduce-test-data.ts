// What the all-reduce spec's worker threads compute, shared by the spec (to check) and the workers (to send).

export interface AllReduceTestInit {
  control: SharedArrayBuffer;
  exchange: SharedArrayBuffer;
  parameterCount: number;
  workers: number;
  worker: number;
  rounds: number;
  /** Barrier parties: workers, or more than will ever arrive (to test aborting). */
  parties: number;
  /** 'values' (default): post every round's result; 'timing': post mean timings at the end. */
  report?: 'values' | 'timing';
}

/** The gradient worker w writes in round r: a deterministic, worker- and round-dependent vector. */
export function testGradient(worker: number, round: number, length: number): Float32Array {
  const values = new Float32Array(length);
  for (let i = 0; i < length; i++)
    values[i] = Math.fround(Math.sin(i * 0.37 + worker * 1.3 + round * 0.11) * (worker + 1));
  return values;
}

/** Images worker w reports in round r (uneven, so the weighting matters). */
export function testImages(worker: number, round: number): number {
  return 1 + ((worker + round) % 3);
}
