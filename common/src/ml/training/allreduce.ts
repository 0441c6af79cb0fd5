// Gradient all-reduce between data-parallel worker threads over shared memory, with the main thread off the
// per-step path. Every worker writes its flattened gradient into its own slot; after a barrier each worker
// averages its own chunk of the parameter vector across all slots into the result (a reduce-scatter); after a
// second barrier every worker reads the whole averaged vector (the all-gather is free: it is shared memory).
//
// Control block (Int32Array over a SharedArrayBuffer the main thread allocates before spawning):
//   [GENERATION, ARRIVED, ABORT, CANCEL, STOP, -, -, -, step of worker 0, step of worker 1, ...]
// The main thread only stores CANCEL and ABORT (and notifies); it never waits.

export const CONTROL_GENERATION = 0;
export const CONTROL_ARRIVED = 1;
/** Non-zero: a worker failed or the main thread gave up; every barrier throws PeerAbortError. */
export const CONTROL_ABORT = 2;
/** Non-zero: the main thread asks the run to stop (worker 0 turns it into a STOP decision at a barrier). */
export const CONTROL_CANCEL = 3;
/** Worker 0's decision for the current step, written before and read after a barrier by everyone. */
export const CONTROL_STOP = 4;
const CONTROL_STEP_BASE = 8;

/** A worker's position: a step index, or one of these. */
export const STEP_INITIALISING = -1;
export const STEP_FINISHED = -2;

export function createControlBuffer(workers: number): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer((CONTROL_STEP_BASE + workers) * Int32Array.BYTES_PER_ELEMENT);
  const control = new Int32Array(buffer);
  for (let worker = 0; worker < workers; worker++) control[CONTROL_STEP_BASE + worker] = STEP_INITIALISING;
  return buffer;
}

export function setWorkerStep(control: Int32Array, worker: number, step: number): void {
  Atomics.store(control, CONTROL_STEP_BASE + worker, step);
}

export function workerStep(control: Int32Array, worker: number): number {
  return Atomics.load(control, CONTROL_STEP_BASE + worker);
}

/** Wakes every worker waiting at a barrier and makes all barriers throw from now on. Safe on the main thread. */
export function requestAbort(control: Int32Array): void {
  Atomics.store(control, CONTROL_ABORT, 1);
  Atomics.notify(control, CONTROL_GENERATION);
}

export function requestCancel(control: Int32Array): void {
  Atomics.store(control, CONTROL_CANCEL, 1);
}

/** Thrown at a barrier when another party failed: the worker should stop quietly (the failure is reported once). */
export class PeerAbortError extends Error {
  constructor() {
    super('training aborted by another worker or the main thread');
    this.name = 'PeerAbortError';
  }
}

/** A reusable central barrier (generation counter) for `parties` threads; it never blocks the main thread. */
export class SharedBarrier {
  constructor(
    private readonly control: Int32Array,
    private readonly parties: number,
    /** How often a waiter re-checks ABORT even without a notify (the main thread's notify is the fast path). */
    private readonly pollMs = 200,
    /** Loads spent spinning before sleeping: a step's barrier often completes within microseconds. */
    private readonly spins = 2000,
  ) {}

  /** Blocks until all parties have arrived. Throws PeerAbortError if the run is aborted before or while waiting. */
  arrive(): void {
    const control = this.control;
    if (Atomics.load(control, CONTROL_ABORT) !== 0) throw new PeerAbortError();
    const generation = Atomics.load(control, CONTROL_GENERATION);
    if (Atomics.add(control, CONTROL_ARRIVED, 1) === this.parties - 1) {
      Atomics.store(control, CONTROL_ARRIVED, 0);
      Atomics.add(control, CONTROL_GENERATION, 1);
      Atomics.notify(control, CONTROL_GENERATION);
      return;
    }
    for (let spin = 0; spin < this.spins; spin++) {
      if (Atomics.load(control, CONTROL_GENERATION) !== generation) return;
    }
    while (Atomics.load(control, CONTROL_GENERATION) === generation) {
      if (Atomics.load(control, CONTROL_ABORT) !== 0) throw new PeerAbortError();
      Atomics.wait(control, CONTROL_GENERATION, generation, this.pollMs);
    }
  }
}

export interface ReduceOutcome {
  /** Mean loss over all workers' images (weighted by images). */
  loss: number;
  /** Images of the step over all workers. */
  images: number;
  /** Time spent waiting at the two barriers (load imbalance + synchronisation). */
  waitMs: number;
  /** Time spent averaging this worker's chunk. */
  reduceMs: number;
}

const STATS_PER_WORKER = 2;

/** Bytes of the exchange buffer for `parameterCount` float32 parameters and `workers` workers. */
export function exchangeBufferBytes(parameterCount: number, workers: number): number {
  const statsBytes = workers * STATS_PER_WORKER * Float64Array.BYTES_PER_ELEMENT;
  return statsBytes + (workers + 1) * parameterCount * Float32Array.BYTES_PER_ELEMENT;
}

/** This worker's chunk [start, end) of a vector of `length` split over `workers`. */
export function chunkOf(length: number, workers: number, worker: number): [number, number] {
  return [Math.floor((length * worker) / workers), Math.floor((length * (worker + 1)) / workers)];
}

/** One worker's view of the shared gradient exchange (one per step is reused for the whole run). */
export class GradientExchange {
  private readonly stats: Float64Array;
  private readonly slots: Float32Array[];
  /** The averaged gradient after reduce() returns; valid until this worker arrives at the next step's barrier. */
  readonly result: Float32Array;

  constructor(
    buffer: SharedArrayBuffer,
    readonly parameterCount: number,
    readonly workers: number,
    readonly workerIndex: number,
    private readonly barrier: SharedBarrier,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (buffer.byteLength < exchangeBufferBytes(parameterCount, workers)) {
      throw new Error(`gradient exchange: buffer of ${buffer.byteLength} bytes is too small`);
    }
    this.stats = new Float64Array(buffer, 0, workers * STATS_PER_WORKER);
    const base = this.stats.byteLength;
    const slotBytes = parameterCount * Float32Array.BYTES_PER_ELEMENT;
    this.slots = Array.from(
      { length: workers },
      (_, worker) => new Float32Array(buffer, base + worker * slotBytes, parameterCount),
    );
    this.result = new Float32Array(buffer, base + workers * slotBytes, parameterCount);
  }

  /** Where this worker writes its flattened gradient before reduce(). */
  get ownSlot(): Float32Array {
    return this.slots[this.workerIndex];
  }

  /**
   * Publishes this worker's loss and image count, waits for every worker's gradient, averages this worker's chunk
   * (weighted by images: the mean gradient of the global batch), runs `beforeRelease` (worker 0 writes its STOP
   * decision there), and waits until every chunk is done. The result is then identical in every worker.
   * `length`: reduce only the first `length` values of the slots (a multi-phase task's phase vector); every
   * worker must pass the same.
   */
  reduce(
    loss: number,
    images: number,
    beforeRelease?: () => void,
    length: number = this.parameterCount,
  ): ReduceOutcome {
    const { stats, workers } = this;
    if (!(Number.isSafeInteger(length) && length >= 0 && length <= this.parameterCount)) {
      throw new Error(`gradient exchange: cannot reduce ${length} of ${this.parameterCount} values`);
    }
    stats[this.workerIndex * STATS_PER_WORKER] = loss;
    stats[this.workerIndex * STATS_PER_WORKER + 1] = images;
    let t0 = this.now();
    this.barrier.arrive();
    let waitMs = this.now() - t0;

    t0 = this.now();
    let totalImages = 0;
    for (let worker = 0; worker < workers; worker++) totalImages += stats[worker * STATS_PER_WORKER + 1];
    const weights = new Float64Array(workers);
    let meanLoss = 0;
    for (let worker = 0; worker < workers; worker++) {
      weights[worker] = totalImages > 0 ? stats[worker * STATS_PER_WORKER + 1] / totalImages : 1 / workers;
      meanLoss += weights[worker] * stats[worker * STATS_PER_WORKER];
    }
    const [start, end] = chunkOf(length, workers, this.workerIndex);
    const result = this.result;
    const first = this.slots[0];
    const w0 = weights[0];
    if (workers === 1) {
      for (let i = start; i < end; i++) result[i] = w0 * first[i];
    } else {
      // One pass over the first two slots (1.5x faster than two passes), then one more per further worker.
      const second = this.slots[1];
      const w1 = weights[1];
      for (let i = start; i < end; i++) result[i] = w0 * first[i] + w1 * second[i];
    }
    for (let worker = 2; worker < workers; worker++) {
      const slot = this.slots[worker];
      const weight = weights[worker];
      for (let i = start; i < end; i++) result[i] += weight * slot[i];
    }
    const reduceMs = this.now() - t0;

    beforeRelease?.();
    t0 = this.now();
    this.barrier.arrive();
    waitMs += this.now() - t0;
    return { loss: meanLoss, images: totalImages, waitMs, reduceMs };
  }
}
