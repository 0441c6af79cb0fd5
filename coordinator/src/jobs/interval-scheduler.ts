import { Injectable } from '@nestjs/common';

/** Timers as a dependency: production code repeats work on real intervals; tests can drive it by hand. */
@Injectable()
export class IntervalScheduler {
  /** Runs `task` every `ms` (never overlapping itself); returns the function that stops it. */
  every(ms: number, task: () => Promise<void> | void): () => void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      void Promise.resolve()
        .then(task)
        .catch(() => undefined)
        .finally(() => {
          running = false;
        });
    }, ms);
    timer.unref();
    return () => clearInterval(timer);
  }
}
