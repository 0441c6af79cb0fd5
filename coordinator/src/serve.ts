import {
  type CoordinatorApp,
  createCoordinatorApp,
  type CreateCoordinatorAppOptions,
} from './create-coordinator-app.js';
import type { CoordinatorConfig, CoordinatorConfigInput } from './config/coordinator-config.js';

export interface ServeOptions extends CreateCoordinatorAppOptions {
  /** Signals that stop the coordinator gracefully. Default SIGINT and SIGTERM. */
  signals?: NodeJS.Signals[];
  /** How long a graceful close may take before the process exits anyway. Default 10 s. */
  closeTimeoutMs?: number;
}

export interface RunningCoordinator extends CoordinatorApp {
  /** Settles once a signal has closed the coordinator (with the signal's name). */
  stopped: Promise<NodeJS.Signals>;
}

/**
 * Starts the coordinator and closes it gracefully on SIGINT/SIGTERM (in-flight requests finish, the database is
 * closed). A second signal, or a close that takes longer than `closeTimeoutMs`, exits the process at once.
 */
export async function serveCoordinator(
  input: CoordinatorConfigInput | CoordinatorConfig = {},
  options: ServeOptions = {},
): Promise<RunningCoordinator> {
  const started = await createCoordinatorApp(input, options);
  const signals = options.signals ?? ['SIGINT', 'SIGTERM'];
  const closeTimeoutMs = options.closeTimeoutMs ?? 10_000;
  let stopping = false;
  const stopped = new Promise<NodeJS.Signals>((resolve, reject) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        process.exit(130); // second signal: do not wait any longer
      }
      stopping = true;
      const timer = setTimeout(() => process.exit(1), closeTimeoutMs);
      timer.unref();
      started
        .close()
        .then(() => {
          clearTimeout(timer);
          for (const s of signals) process.off(s, onSignal);
          resolve(signal);
        })
        .catch(reject);
    };
    for (const s of signals) process.on(s, onSignal);
  });
  return { ...started, stopped };
}
