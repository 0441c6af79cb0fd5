import type { AddressInfo } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import { AppModule, type ModuleImport } from './app.module.js';
import {
  type CoordinatorConfig,
  type CoordinatorConfigInput,
  describeDatabase,
  isResolvedCoordinatorConfig,
  resolveCoordinatorConfig,
} from './config/coordinator-config.js';
import type { Clock } from './core/clock.js';
import { BootstrapLogger } from './logging/bootstrap-logger.js';
import { setupOpenApi } from './openapi/openapi.js';

export interface CreateCoordinatorAppOptions {
  /** Environment for FEDSYNTH_* variables when `config` is an input; none by default. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Base of relative paths in an input config. Default process.cwd(). */
  cwd?: string;
  /** Replaces the system clock (tests). */
  clock?: Clock;
  /** Where the JSON logs go (default stdout). */
  logDestination?: DestinationStream;
  /** Extra modules to mount (later features, tests). */
  imports?: ModuleImport[];
}

export interface CoordinatorApp {
  app: INestApplication;
  config: CoordinatorConfig;
  /** Where this process listens, e.g. http://127.0.0.1:41234 (the bound port, even when config.port is 0). */
  url: string;
  close(): Promise<void>;
}

/** A resolved configuration as is, or an input validated (once) by {@link resolveCoordinatorConfig}. */
export function coordinatorConfig(
  input: CoordinatorConfigInput | CoordinatorConfig = {},
  options: Pick<CreateCoordinatorAppOptions, 'env' | 'cwd'> = {},
): CoordinatorConfig {
  return isResolvedCoordinatorConfig(input) ? input : resolveCoordinatorConfig(input, options);
}

/**
 * Builds the coordinator, runs the database migrations, loads (or creates) its signing key and starts the HTTP
 * server. Throws (ConfigError, database or listen errors) instead of exiting the process.
 */
export async function createCoordinatorApp(
  input: CoordinatorConfigInput | CoordinatorConfig = {},
  options: CreateCoordinatorAppOptions = {},
): Promise<CoordinatorApp> {
  const config = coordinatorConfig(input, options);
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot({
      config,
      clock: options.clock,
      logDestination: options.logDestination,
      imports: options.imports,
    }),
    { logger: BootstrapLogger.create(config, options.logDestination), abortOnError: false },
  );
  try {
    const logger = app.get(Logger);
    app.useLogger(logger);
    app.disable('x-powered-by');
    app.use((_req: unknown, res: { setHeader(k: string, v: string): void }, next: () => void) => {
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('Referrer-Policy', 'no-referrer');
      next();
    });
    setupOpenApi(app, config);
    await app.listen(config.port, config.host);
    const url = localUrl(app.getHttpServer().address() as AddressInfo);
    logger.log(
      `coordinator listening on ${url} (public URL ${config.publicUrl}, audience ${config.audience}, ` +
        `database ${describeDatabase(config.db)}, data ${config.dataDir})`,
      'Coordinator',
    );
    return { app, config, url, close: () => app.close() };
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
}

function localUrl(address: AddressInfo): string {
  const host =
    address.address === '0.0.0.0' || address.address === '::'
      ? '127.0.0.1'
      : address.family === 'IPv6'
        ? `[${address.address}]`
        : address.address;
  return `http://${host}:${address.port}`;
}
