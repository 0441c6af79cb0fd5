// Progress for long jobs on stderr: one rewritten line on a terminal; in a log, a line every 10 % or every 30 s,
// whichever comes first (a 100 000-step run still shows it is alive).

export interface ProgressSink {
  update(done: number, total: number, detail?: string): void;
  finish(message?: string): void;
}

function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export class StderrProgress implements ProgressSink {
  private readonly started = Date.now();
  private lastPercent = -Infinity;
  private lastLineAt = -Infinity;
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly unit = 'items',
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly logIntervalMs = 30_000,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  update(done: number, total: number, detail = ''): void {
    const elapsed = Date.now() - this.started;
    const rate = done / Math.max(elapsed / 1000, 1e-3);
    const eta = done > 0 ? (elapsed / done) * (total - done) : NaN;
    const percent = total > 0 ? (100 * done) / total : 100;
    const line = `${this.label} ${done}/${total} ${this.unit} (${percent.toFixed(0)}%) ${rate.toFixed(2)} ${this.unit}/s ETA ${formatDuration(eta)}${detail ? ` ${detail}` : ''}`;
    if (this.tty) {
      this.stream.write(`\r\x1b[2K${line}`);
    } else if (
      percent - this.lastPercent >= 10 ||
      elapsed - this.lastLineAt >= this.logIntervalMs ||
      done === total
    ) {
      this.lastPercent = percent;
      this.lastLineAt = elapsed;
      this.stream.write(`${line}\n`);
    }
  }

  finish(message?: string): void {
    if (this.tty) this.stream.write('\r\x1b[2K');
    if (message) this.stream.write(`${message}\n`);
  }
}

/** For callers that want no output (tests, --quiet). */
export const silentProgress: ProgressSink = { update: () => undefined, finish: () => undefined };
