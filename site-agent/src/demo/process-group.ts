// Child processes of a local federation (the coordinator, the site agents, one-shot CLI commands): each one's output
// goes to its own log file, and every child still running is stopped (SIGTERM, then SIGKILL) when the group is
// closed — on success, on an error and on Ctrl-C — so a demo or a test never leaves orphans behind.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The `fedsynth` launcher of this checkout (site-agent/bin/fedsynth.js). */
export const FEDSYNTH_BIN = fileURLToPath(new URL('../../bin/fedsynth.js', import.meta.url));

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  /** a short name for messages ("coordinator", "site-1 agent") */
  name: string;
  child: ChildProcess;
  pid: number;
  /** stdout and stderr of the process (appended to across restarts) */
  logFile: string;
  exited: Promise<ProcessExit>;
  /** set once the process has exited */
  exit?: ProcessExit;
  /** the log file's text so far */
  log(): string;
}

export interface SpawnOptions {
  logFile: string;
  env?: Record<string, string | undefined>;
  /** text written to the child's standard input, which is then closed */
  stdin?: string;
  cwd?: string;
}

export function describeExit(exit: ProcessExit): string {
  return exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
}

export class ProcessGroup {
  private readonly running = new Set<ManagedProcess>();
  private closed = false;

  /** Starts `fedsynth <args>` as a child process. */
  spawnFedsynth(name: string, args: string[], options: SpawnOptions): ManagedProcess {
    return this.spawn(name, process.execPath, [FEDSYNTH_BIN, ...args], options);
  }

  spawn(name: string, command: string, args: string[], options: SpawnOptions): ManagedProcess {
    if (this.closed) throw new Error(`cannot start ${name}: the process group is closed`);
    mkdirSync(path.dirname(options.logFile), { recursive: true });
    const fd = openSync(options.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        cwd: options.cwd,
        env: { ...process.env, ...options.env },
        stdio: [options.stdin === undefined ? 'ignore' : 'pipe', fd, fd],
      });
    } finally {
      closeSync(fd); // the child holds its own copy
    }
    if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
    if (options.stdin !== undefined) child.stdin!.end(options.stdin);
    const managed: ManagedProcess = {
      name,
      child,
      pid: child.pid,
      logFile: options.logFile,
      exited: new Promise<ProcessExit>((resolve) => {
        child.once('exit', (code, signal) => {
          managed.exit = { code, signal };
          this.running.delete(managed);
          resolve(managed.exit);
        });
      }),
      log: () => {
        try {
          return readFileSync(options.logFile, 'utf8');
        } catch {
          return '';
        }
      },
    };
    this.running.add(managed);
    return managed;
  }

  /** Runs `fedsynth <args>` to its end; the exit and the log's text. */
  async runFedsynth(
    name: string,
    args: string[],
    options: SpawnOptions,
  ): Promise<ProcessExit & { output: string }> {
    const before = safeLength(options.logFile);
    const p = this.spawnFedsynth(name, args, options);
    const exit = await p.exited;
    let output = '';
    try {
      output = readFileSync(options.logFile).subarray(before).toString('utf8');
    } catch {
      // no log
    }
    return { ...exit, output };
  }

  /** Sends `signal` (default SIGTERM), waits up to `timeoutMs`, then SIGKILLs. Resolves with the exit. */
  async stop(
    p: ManagedProcess,
    signal: NodeJS.Signals = 'SIGTERM',
    timeoutMs = 10_000,
  ): Promise<ProcessExit> {
    if (p.exit) return p.exit;
    // a stopped (SIGSTOP) process cannot act on SIGTERM until it is continued
    trySignal(p, 'SIGCONT');
    trySignal(p, signal);
    const timer = setTimeout(() => trySignal(p, 'SIGKILL'), timeoutMs);
    try {
      return await p.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL, and the exit. */
  kill(p: ManagedProcess): Promise<ProcessExit> {
    trySignal(p, 'SIGKILL');
    return p.exited;
  }

  get processes(): ManagedProcess[] {
    return [...this.running];
  }

  /** Stops every child still running (site agents first, then the rest), and refuses new ones. */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closed = true;
    const all = [...this.running];
    const agents = all.filter((p) => p.name.includes('agent'));
    await Promise.all(agents.map((p) => this.stop(p, 'SIGTERM', timeoutMs)));
    await Promise.all(all.filter((p) => !agents.includes(p)).map((p) => this.stop(p, 'SIGTERM', timeoutMs)));
  }

  /** Last resort on the way out (process 'exit' handlers cannot wait): SIGKILL whatever is left. */
  killAllNow(): void {
    for (const p of this.running) trySignal(p, 'SIGKILL');
  }
}

function trySignal(p: ManagedProcess, signal: NodeJS.Signals): void {
  if (p.exit) return;
  try {
    p.child.kill(signal);
  } catch {
    // already gone
  }
}

function safeLength(file: string): number {
  try {
    return readFileSync(file).length;
  } catch {
    return 0;
  }
}
