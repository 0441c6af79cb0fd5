import type { LoggerService } from '@nestjs/common';
import { type DestinationStream, type Level, type Logger, pino } from 'pino';
import type { CoordinatorConfig } from '../config/coordinator-config.js';
import { pinoHttpOptions } from './logging.module.js';

/**
 * Nest's logger from the first line on: the same JSON format, level and redaction as the request logs, so even a
 * failed start (bad database, migration error) logs structured lines at the configured level. Once the app is
 * up, nestjs-pino's Logger takes over (it adds the request id).
 */
export class BootstrapLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}

  static create(config: CoordinatorConfig, destination?: DestinationStream): BootstrapLogger {
    const { level, base, timestamp, redact } = pinoHttpOptions(config);
    return new BootstrapLogger(pino({ level, base, timestamp, redact }, destination ?? pino.destination(1)));
  }

  log(message: unknown, ...rest: unknown[]): void {
    this.write('info', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.write('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.write('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('trace', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('fatal', message, rest);
  }

  private write(level: Level, message: unknown, rest: unknown[]): void {
    // Nest passes (message, ...params, context) and, for errors, (message, stack, context)
    const params = rest.filter((p) => p !== undefined && p !== null);
    const context =
      params.length > 0 && typeof params.at(-1) === 'string' ? (params.pop() as string) : undefined;
    const stack = params.length > 0 && typeof params[0] === 'string' ? (params.shift() as string) : undefined;
    const fields: Record<string, unknown> = { context };
    if (stack) fields.stack = stack;
    if (params.length > 0) fields.params = params;
    if (message instanceof Error) this.logger[level]({ ...fields, err: message }, message.message);
    else if (typeof message === 'object' && message !== null) this.logger[level]({ ...fields, ...message });
    else this.logger[level](fields, String(message));
  }
}
