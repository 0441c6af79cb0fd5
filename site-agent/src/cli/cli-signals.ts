/**
 * Runs a long job that Ctrl-C (or SIGTERM) stops cleanly: the first signal aborts the job's signal, which ends
 * training after the current step with a checkpoint kept, instead of killing the process mid-write.
 */
export async function stopOnSignal<T>(command: string, job: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onSignal = () => {
    process.stderr.write(
      `\n${command}: stopping after this step; a checkpoint is kept (continue with --resume)\n`,
    );
    abort.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await job(abort.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
