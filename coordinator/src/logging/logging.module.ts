import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type DynamicModule, Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { type DestinationStream, stdTimeFunctions } from 'pino';
import type { Options } from 'pino-http';
import type { CoordinatorConfig } from '../config/coordinator-config.js';

/** Paths pino replaces with "[redacted]": credentials in headers, and secrets wherever a log object carries them. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  ...['password', 'token', 'accessToken', 'enrollmentToken', 'proof', 'assertion'].flatMap((key) => [
    key,
    `*.${key}`,
  ]),
];

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const QUIET_URLS = new Set(['/health', '/metrics']);

export function pinoHttpOptions(config: CoordinatorConfig): Options {
  return {
    level: config.logLevel,
    base: { service: 'fedsynth-coordinator' },
    timestamp: stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    // a well-formed X-Request-Id from a proxy is kept; otherwise a new one; either way it is echoed back
    genReqId: (req: IncomingMessage, res: ServerResponse) => {
      const given = req.headers['x-request-id'];
      const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    // logs written while handling a request carry just { requestId }; the completion line has req and res
    quietReqLogger: true,
    customAttributeKeys: { reqId: 'requestId' },
    autoLogging: { ignore: (req: IncomingMessage) => QUIET_URLS.has(req.url ?? '') },
  };
}

/** Structured JSON logs (nestjs-pino): one line per request with its request id, and every Nest log. */
@Module({})
export class LoggingModule {
  static forRoot(config: CoordinatorConfig, destination?: DestinationStream): DynamicModule {
    const options = pinoHttpOptions(config);
    return {
      module: LoggingModule,
      imports: [LoggerModule.forRoot({ pinoHttp: destination ? [options, destination] : options })],
    };
  }
}
