// The agent's log: one line per event on stderr, with an ISO time and a level; injectable (tests collect or
// silence it).

export type AgentLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface AgentLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const ORDER: Record<AgentLogLevel | 'silent', number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

export function streamLogger(
  level: AgentLogLevel | 'silent' = 'info',
  write: (line: string) => void = (line) => process.stderr.write(line),
  now: () => Date = () => new Date(),
): AgentLogger {
  const at = (l: AgentLogLevel) => (message: string) => {
    if (ORDER[l] < ORDER[level]) return;
    write(`${now().toISOString()} ${l.padEnd(5)} ${message}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export const silentLogger: AgentLogger = streamLogger('silent');
