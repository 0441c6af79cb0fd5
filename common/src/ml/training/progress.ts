// Progress of a run as the main thread reports it: rates and ETA over a sliding window of recent steps.

/** One phase of a step of a multi-phase task, averaged over the workers. */
export interface PhaseProgress {
  loss: number;
  /** Images behind the phase's loss (over all workers). */
  images: number;
  lr: number;
  /** The phase's declared metrics. */
  metrics: Record<string, number>;
}

export interface TrainingProgress {
  /** Steps completed (of the whole job, counting steps done before a resume). */
  step: number;
  steps: number;
  /** Mean loss of the step over all workers' images. */
  loss: number;
  /** Learning rate the step used. */
  lr: number;
  /** Images in the step (the global batch). */
  images: number;
  /** Over the recent window of steps. */
  imagesPerSecond: number;
  /** Since startTraining was called (this session). */
  elapsedMs: number;
  /** Remaining steps at the recent step rate. */
  etaMs: number;
  /** Worker 0's own time for the step (compute, all-reduce, update). */
  stepMs: number;
  /**
   * Multi-phase tasks: every phase that ran in this step (lazy phases appear only on their steps), in order.
   * `loss`, `lr` and `images` above are the loss phase's.
   */
  phases?: Record<string, PhaseProgress>;
}

export interface StepReport {
  step: number;
  loss: number;
  images: number;
  lr: number;
  stepMs: number;
  phases?: Record<string, PhaseProgress>;
}

export class ProgressTracker {
  private readonly times: number[];
  private readonly images: number[] = [];

  constructor(
    private readonly steps: number,
    private readonly sessionStart: number,
    trainingStart: number,
    private readonly window = 20,
  ) {
    if (window < 1) throw new Error('ProgressTracker: window must be >= 1');
    this.times = [trainingStart];
  }

  update(report: StepReport, now: number): TrainingProgress {
    this.times.push(now);
    this.images.push(report.images);
    if (this.images.length > this.window) {
      this.times.shift();
      this.images.shift();
    }
    const span = Math.max(now - this.times[0], 1e-6);
    const imagesInWindow = this.images.reduce((sum, count) => sum + count, 0);
    const msPerStep = span / this.images.length;
    return {
      step: report.step,
      steps: this.steps,
      loss: report.loss,
      lr: report.lr,
      images: report.images,
      imagesPerSecond: (imagesInWindow * 1000) / span,
      elapsedMs: now - this.sessionStart,
      etaMs: Math.max(this.steps - report.step, 0) * msPerStep,
      stepMs: report.stepMs,
      ...(report.phases && { phases: report.phases }),
    };
  }
}
